"""Real dpkg inside a tree, under bubblewrap, and checks of .deb files before that.

The tree is an OSTree-layout tree (mounted as an overlay by the caller): /etc is
its /usr/etc, the dpkg database and the other package state live in /usr and
are bound at their /var paths, /var itself is a scratch directory whose content
becomes tmpfiles.d lines afterwards.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.layout import DPKG_DB, STATE_DIR, STATE_MOVES
from apt_ostree.sandbox import run_in_tree
from apt_ostree.treefs import Tree, TreeError

# What dpkg and maintainer scripts need of root's power, and nothing else: file
# ownership, modes and file capabilities anywhere in the tree, and switching to
# a service user (su, runuser). No CAP_DAC_READ_SEARCH (CAP_DAC_OVERRIDE already
# reads everything; its only extra is open_by_handle_at, which reaches files
# outside the tree), no CAP_MKNOD (Debian packages ship no device nodes and an
# OSTree commit cannot hold one), none of sandbox.FORBIDDEN_CAPS.
DPKG_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETUID", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
POLICY_RC_D = (
    "#!/bin/sh\n# apt-ostree: services are not started while building a deployment.\nexit 101\n"
)
DEBS_DIR = "/tmp/apt-ostree-debs"
AUDIT_MARK = "apt-ostree: dpkg --audit follows"


class DebError(AptOstreeError):
    pass


class MaintainerScriptError(AptOstreeError):
    pass


# Where apt-ostree writes, or what it binds into the sandbox, once dpkg has run
# (as a package names them: /etc is /usr/etc in the tree, /opt is /var/opt). A
# package whose symlink stands at one of them, or at a directory above one,
# is refused: apt-ostree would have to write through it. Symlinks anywhere else
# are ordinary (Debian ships many absolute ones) and resolve inside the tree.
WRITTEN_AFTER_DPKG = (
    "usr/lib/opt",
    "usr/lib/tmpfiles.d",
    "usr/lib/sysusers.d",
    "usr/share/factory/var",
    "usr/sbin/policy-rc.d",
    "usr/lib/modules/*/initramfs.img",
    DPKG_DB,
    STATE_DIR,
    # mount points of the scratch /var
    "var/lib/dpkg",
    *STATE_MOVES,
)
# Trees that apt-ostree fills itself: no symlink below them either.
APT_OSTREE_TREES = ("usr/lib/opt", "usr/share/factory/var", DPKG_DB, STATE_DIR)
# merged-/usr: a package's /lib/x is the tree's /usr/lib/x.
_USR_ALIASES = ("bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/")


def link_in_the_way(rel: str) -> bool:
    """Whether a symlink at the package path `rel` stands where apt-ostree writes."""
    if rel.startswith(_USR_ALIASES):
        rel = "usr/" + rel
    if rel.startswith(tuple(f"{tree}/" for tree in APT_OSTREE_TREES)):
        return True
    parts = rel.split("/")
    for protected in WRITTEN_AFTER_DPKG:
        wanted = protected.split("/")
        # `rel` is the protected path or a directory above it.
        if len(parts) <= len(wanted) and all(
            fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=False)
        ):
            return True
    return False


def check_deb(path: Path, label: str | None = None) -> list[str]:
    """The paths a .deb installs; refuse ones that escape the tree, that an OSTree
    system cannot take (/usr/local, /boot), and symlinks where apt-ostree writes after
    dpkg (WRITTEN_AFTER_DPKG). Messages name the package as `label` (default: the
    file's name)."""
    shown = label or path.name
    try:
        proc = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True
        )
    except subprocess.CalledProcessError as e:
        raise DebError(f"{shown} is not a valid .deb: {e.stderr.decode().strip()}") from e
    names, outside = [], []
    with tempfile.TemporaryFile() as f:
        f.write(proc.stdout)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise DebError(f"{shown} has a file outside the tree: {name}")
                rel = name.removeprefix("./")
                # Other link targets resolve inside the tree (sandbox, treefs).
                if member.issym() and link_in_the_way(rel.rstrip("/")):
                    raise DebError(
                        f"{shown} installs /{rel} as a symlink to {member.linkname}:"
                        " apt-ostree writes there after dpkg and writes through no symlink"
                    )
                if rel.startswith(("usr/local/", "boot/")) and not member.isdir():
                    outside.append(rel)
                names.append("/" + rel)
    # A kernel's /boot files move to /usr/lib/modules/KVER after dpkg (system/kernels.py).
    paths = {n.strip("/") for n in names}
    for rel in outside:
        if not _kernel_boot_file(rel, paths):
            top = "/usr/local" if rel.startswith("usr/local/") else "/boot"
            raise DebError(
                f"{shown} installs /{rel}: {top} is not part of the OSTree commit;"
                " packages must install under /usr"
            )
    return names


def _kernel_boot_file(rel: str, paths: set[str]) -> bool:
    """Is `rel` /boot/vmlinuz-KVER, config-KVER or System.map-KVER of a package that
    also installs the modules of KVER?"""
    top, _, name = rel.partition("/")
    match = re.fullmatch(r"(vmlinuz|config|System\.map)-(.+)", name)
    if top != "boot" or "/" in name or match is None:
        return False
    kver = match.group(2)
    return f"usr/lib/modules/{kver}" in paths or f"lib/modules/{kver}" in paths


@dataclass
class DpkgRoot:
    """A tree prepared for dpkg: `root` (the overlay) and its scratch /var."""

    root: Path
    var: Path

    def binds(self) -> list[tuple[Path, str]]:
        """Writable binds into the sandbox. bwrap resolves a source on the host and a
        destination under the new root before the sandbox starts: both are checked
        to be real directories, with no symlink on the way, that the base or an
        earlier dpkg run could have planted (it would bind a host directory)."""
        try:
            with Tree(self.root) as tree, Tree(self.var, shown_as="/var") as var:
                binds = [(_bind_source(tree, "usr/etc"), "/etc"), (self.var, "/var"),
                         (_bind_source(tree, DPKG_DB), "/var/lib/dpkg")]  # fmt: skip
                for var_path, name in STATE_MOVES.items():
                    if tree.exists(f"{STATE_DIR}/{name}"):
                        binds.append((_bind_source(tree, f"{STATE_DIR}/{name}"), "/" + var_path))
                for _, dest in binds[2:]:
                    var.makedirs(dest.removeprefix("/var/"))
        except TreeError as e:
            raise DebError(
                f"{e} in the tree: apt-ostree binds it into the sandbox and follows no"
                " symlink out of the tree"
            ) from e
        return binds

    def prepare(self) -> None:
        self.binds()
        with Tree(self.var, shown_as="/var") as var:
            for d in ("tmp", "log", "cache", "lib", "spool", "opt", "usrlocal", "home",
                      "roothome"):  # fmt: skip
                var.makedirs(d)
            var.chmod("tmp", 0o1777)


def _bind_source(tree: Tree, rel: str) -> Path:
    path = tree.host_path(rel)
    if not tree.is_dir(rel):
        raise TreeError("/" + rel, "is not a directory")
    return path


@contextmanager
def _policy_rc_d(root: Path) -> Iterator[None]:
    rel = "usr/sbin/policy-rc.d"
    with Tree(root) as tree:
        if tree.exists(rel):
            raise DebError(
                "the base commit has /usr/sbin/policy-rc.d; apt-ostree cannot layer on it"
            )
        try:
            # Written and removed in place, never through a link (treefs).
            tree.write_text(rel, POLICY_RC_D, mode=0o755)
        except TreeError as e:
            raise DebError(f"cannot write /{rel}: {e}") from e
        try:
            yield
        except BaseException:
            with contextlib.suppress(TreeError):
                tree.unlink(rel, missing_ok=True)
            raise
        tree.unlink(rel, missing_ok=True)


def run_dpkg(
    tree: DpkgRoot, argv: Sequence[str], *, debs: Path | None = None, what: str = "dpkg"
) -> str:
    """Run one dpkg command in the tree's sandbox; raise MaintainerScriptError with its
    output when it (or a maintainer script) fails."""
    flag = Path(tempfile.mkstemp(prefix="apt-ostree-booted-")[1])
    ro_binds = [(flag, "/run/ostree-booted")]
    if debs is not None:
        ro_binds.append((debs, DEBS_DIR))
    try:
        with _policy_rc_d(tree.root):
            return run_in_tree(
                tree.root,
                list(argv),
                what=what,
                binds=tree.binds(),
                ro_binds=ro_binds,
                caps=DPKG_CAPS,
                # INITRD=No: the kernel hooks build no initramfs in /boot (apt-ostree
                # builds one in /usr/lib/modules/KVER after dpkg: system/kernels.py).
                env={"DPKG_FRONTEND_LOCKED": "", "SYSTEMD_OFFLINE": "1", "INITRD": "No"},
            )
    except CommandError as e:
        shown = "\n".join(e.output.rstrip().splitlines()[-30:]) or "(no output)"
        raise MaintainerScriptError(f"{e}; its output:\n{shown}") from e
    finally:
        flag.unlink(missing_ok=True)


def _control(deb: Path, *fields: str) -> list[str]:
    proc = subprocess.run(
        ["dpkg-deb", "--show", "--showformat=" + "\\n".join(f"${{{f}}}" for f in fields),
         str(deb)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    values = proc.stdout.split("\n")
    return values + [""] * (len(fields) - len(values))


def _relation_names(field: str) -> set[str]:
    names = set()
    for group in field.split(","):
        for alternative in group.split("|"):
            name = alternative.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]
            if name:
                names.add(name)
    return names


def install_waves(debs: Sequence[Path]) -> list[list[Path]]:
    """Split `debs` so that a package's Pre-Depends among them are installed (unpacked
    AND configured) by an earlier `dpkg --install`, as apt orders it."""
    info = {}
    for deb in debs:
        name, pre = _control(deb, "Package", "Pre-Depends")
        info[name] = (deb, _relation_names(pre))
    level: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in level:
            return level[name]
        pre = [p for p in info[name][1] if p in info and p not in seen]
        level[name] = 1 + max((depth(p, seen | {name}) for p in pre), default=-1)
        return level[name]

    waves: dict[int, list[Path]] = {}
    for name in info:
        waves.setdefault(depth(name), []).append(info[name][0])
    return [waves[k] for k in sorted(waves)]


def install_debs(tree: DpkgRoot, debs: Sequence[Path], remove: Sequence[str] = ()) -> str:
    """`dpkg --remove` then `dpkg --install` of `debs` (copied nowhere: bound read-only)."""
    output = ""
    if remove:
        output += run_dpkg(tree, ["dpkg", "--remove", *remove], what="dpkg --remove")
    if debs:
        parent = debs[0].parent
        if any(d.parent != parent for d in debs):
            raise DebError("internal: the packages to install must be in one directory")
        # One sandbox for every dpkg run, the audit included: each start costs.
        script = ["set -e"]
        for wave in install_waves(debs):
            inside = " ".join(f"{DEBS_DIR}/{d.name}" for d in wave)
            script.append(f"dpkg --install --force-confdef --force-confold {inside}")
        script.append(f"echo {AUDIT_MARK}")
        script.append("dpkg --audit")
        output += run_dpkg(
            tree, ["/bin/sh", "-c", "\n".join(script)], debs=parent, what="dpkg --install"
        )
        output, _, audit = output.partition(AUDIT_MARK + "\n")
    else:
        audit = run_dpkg(tree, ["dpkg", "--audit"], what="dpkg --audit")
    if audit.strip():
        raise MaintainerScriptError(f"dpkg --audit is not clean after the transaction:\n{audit}")
    return output
