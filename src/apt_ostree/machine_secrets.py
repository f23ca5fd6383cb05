"""Machine secrets are made on the machine, once, and never enter a commit.

Maintainer scripts generate per-machine secrets while a tree is built:
openssh-server's postinst makes SSH host keys, ssl-cert's a snakeoil key and
certificate. In a commit they would be the same on every machine of a fleet,
readable by anyone with the image, and, because every upgrade or relayer runs
the postinst again, new on every deployment (the machine's SSH identity would
change with each upgrade).

The rule (docs/security.md): a regular file under /etc that no package ships
(no dpkg file list names it) and that holds a private key (a PEM or OpenSSH
`-----BEGIN ... PRIVATE KEY-----` block) is a machine secret. Unowned files
under /etc with the same stem that hold its public half (`NAME.pub`, a PEM
certificate or public key) go with it, and so do unowned symlinks that pointed
at one of them. All of them are left out of the commit; a line in
/usr/lib/apt-ostree/machine-secrets.d/ tells apt-ostree-machine-secrets.service
what makes them again on the booted machine, before any service starts, when
/etc lacks them. /etc keeps them from then on: ostree's three-way merge keeps
files that the machine added to /etc across upgrades, relayers and rollbacks.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from apt_ostree.reporter import Reporter
from apt_ostree.treefs import Tree

SECRETS_DIR = "usr/lib/apt-ostree/machine-secrets.d"
# Larger files are not key material (keys and certificates are a few KiB).
MAX_SIZE = 64 * 1024
_PRIVATE_KEY = re.compile(rb"^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----", re.M)
_PUBLIC_HALF = re.compile(
    rb"^-----BEGIN (CERTIFICATE|PUBLIC KEY|[A-Z0-9 ]+ PUBLIC KEY)-----|^(ssh|ecdsa)-[a-z0-9-]+ ",
    re.M,
)
# What makes a known secret again on the booted machine (a glob on its /etc path).
REGENERATORS = (
    ("/etc/ssh/ssh_host_*_key", "ssh-keygen -A"),
    ("/etc/ssl/private/ssl-cert-snakeoil.key",
     "make-ssl-cert generate-default-snakeoil --force-overwrite"),
)  # fmt: skip


@dataclass
class MachineSecret:
    path: str  # as the booted machine sees it: /etc/...
    companions: list[str]  # its public half and links to them, also left out
    regenerate: str | None  # the command that makes it again; None: none is known


def _stem(name: str) -> str:
    return name.split(".", 1)[0]


def regenerator(path: str) -> str | None:
    return next((cmd for pattern, cmd in REGENERATORS if fnmatch.fnmatch(path, pattern)), None)


def _etc_entries(tree: Tree, etc: str, only: set[str] | None) -> dict[str, os.stat_result]:
    """/etc/... path -> lstat of every entry under the tree's `etc` (or of those in `only`)."""
    entries = {}
    for dirpath, dirnames, filenames, dirfd in tree.walk(etc):
        for name in filenames + dirnames:
            rel = os.path.normpath(os.path.join(dirpath, name))
            path = "/etc/" + rel
            if only is not None and path not in only:
                continue
            entries[path] = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    return entries


def find_machine_secrets(
    tree: Tree, etc: str, owned: set[str], new: Iterable[str] | None = None
) -> list[MachineSecret]:
    """The machine secrets under the tree's `etc` directory (`usr/etc` or `etc`).

    `owned` is every path that the tree's packages ship (/etc/... as dpkg lists
    them); `new`, when given, restricts the search to those /etc paths (what a
    layer added).
    """
    entries = _etc_entries(tree, etc, set(new) if new is not None else None)
    unowned = {p: st for p, st in entries.items() if p not in owned}

    def content(path: str) -> bytes:
        st = unowned[path]
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIZE:
            return b""
        return tree.read_bytes(etc + path.removeprefix("/etc"), strict=True) or b""

    secrets = []
    for path in sorted(unowned):
        if not _PRIVATE_KEY.search(content(path)):
            continue
        stem = _stem(os.path.basename(path))
        companions = [
            other for other in sorted(unowned)
            if other != path and _stem(os.path.basename(other)) == stem
            and _PUBLIC_HALF.search(content(other))
        ]  # fmt: skip
        secrets.append(MachineSecret(path, companions, regenerator(path)))
    gone = {s.path for s in secrets} | {c for s in secrets for c in s.companions}
    for secret in secrets:
        for path, st in sorted(unowned.items()):
            if stat.S_ISLNK(st.st_mode) and path not in gone:
                target = tree.readlink(etc + path.removeprefix("/etc"))
                resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
                if resolved in {secret.path, *secret.companions}:
                    secret.companions.append(path)
                    gone.add(path)
    return secrets


def strip_machine_secrets(
    tree: Tree, etc: str, owned: set[str], new: Iterable[str] | None = None, *, conf: str
) -> list[MachineSecret]:
    """Remove the machine secrets from the tree; record in SECRETS_DIR/`conf` what makes
    the known ones again at boot. Returns what was removed."""
    secrets = find_machine_secrets(tree, etc, owned, new)
    for secret in secrets:
        for path in (secret.path, *secret.companions):
            tree.unlink(etc + path.removeprefix("/etc"))
    known = [s for s in secrets if s.regenerate is not None]
    if known:
        tree.makedirs(SECRETS_DIR)
        lines = "".join(f"{s.path} {s.regenerate}\n" for s in known)
        tree.write_text(
            f"{SECRETS_DIR}/{conf}",
            "# Machine secrets that apt-ostree left out of the commit: PATH COMMAND.\n"
            "# apt-ostree-machine-secrets.service runs COMMAND at boot when PATH is missing.\n"
            + lines,
        )
    return secrets


def owned_paths(tree: Tree, dpkg_db: str) -> set[str]:
    """Every path that the dpkg database of the tree lists (its packages' files)."""
    paths: set[str] = set()
    info = f"{dpkg_db}/info"
    for name in tree.listdir(info, strict=True):
        if name.endswith(".list"):
            text = tree.read_text(f"{info}/{name}", strict=True) or ""
            paths.update(line for line in text.splitlines() if line)
    return paths


def report(secrets: list[MachineSecret], reporter: Reporter) -> None:
    for secret in secrets:
        if secret.regenerate is None:
            reporter.message(
                f"warning: {secret.path} is a private key that a maintainer script generated;"
                " it is left out of the commit and nothing makes it again at boot"
            )
        else:
            reporter.info(f"{secret.path}: left out of the commit, made at boot")
