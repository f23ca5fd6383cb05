"""Real dpkg inside a tree, under bubblewrap, and checks of .deb files before that.

The tree is an OSTree-layout tree (mounted as an overlay by the caller): /etc is
its /usr/etc, the dpkg database and the other package state live in /usr and
are bound at their /var paths, /var itself is a scratch directory whose content
becomes tmpfiles.d lines afterwards.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.layout import DPKG_DB, STATE_DIR, STATE_MOVES
from apt_ostree.sandbox import run_in_tree

# What dpkg and maintainer scripts need of root's power, and nothing else
# (no CAP_SYS_ADMIN: no mounts; no CAP_NET_*: there is no network anyway).
DPKG_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETUID", "CAP_KILL", "CAP_AUDIT_WRITE",
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


def check_deb(path: Path) -> list[str]:
    """The paths a .deb installs; refuse ones that escape the tree or that
    an OSTree system cannot take (/usr/local, /boot)."""
    try:
        proc = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True
        )
    except subprocess.CalledProcessError as e:
        raise DebError(f"{path.name} is not a valid .deb: {e.stderr.decode().strip()}") from e
    names = []
    with tempfile.TemporaryFile() as f:
        f.write(proc.stdout)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise DebError(f"{path.name} has a file outside the tree: {name}")
                if member.issym() or member.islnk():
                    pass  # link targets are resolved inside the sandbox's root
                rel = name.removeprefix("./")
                if rel.startswith(("usr/local/", "boot/")) and not member.isdir():
                    top = "/usr/local" if rel.startswith("usr/local/") else "/boot"
                    raise DebError(
                        f"{path.name} installs /{rel}: {top} is not part of the OSTree commit;"
                        " packages must install under /usr"
                    )
                names.append("/" + rel)
    return names


@dataclass
class DpkgRoot:
    """A tree prepared for dpkg: `root` (the overlay) and its scratch /var."""

    root: Path
    var: Path

    def binds(self) -> list[tuple[Path, str]]:
        binds = [(self.root / "usr/etc", "/etc"), (self.var, "/var"),
                 (self.root / DPKG_DB, "/var/lib/dpkg")]  # fmt: skip
        for var_path, name in STATE_MOVES.items():
            state = self.root / STATE_DIR / name
            if state.is_dir():
                binds.append((state, "/" + var_path))
        return binds

    def prepare(self) -> None:
        for _, dest in self.binds()[2:]:
            (self.var / dest.removeprefix("/var/")).mkdir(parents=True, exist_ok=True)
        for d in ("tmp", "log", "cache", "lib", "spool", "opt", "usrlocal", "home", "roothome"):
            (self.var / d).mkdir(exist_ok=True)
        (self.var / "tmp").chmod(0o1777)


@contextmanager
def _policy_rc_d(root: Path) -> Iterator[None]:
    path = root / "usr/sbin/policy-rc.d"
    existed = path.exists() or path.is_symlink()
    if existed:
        raise DebError("the base commit has /usr/sbin/policy-rc.d; apt-ostree cannot layer on it")
    path.write_text(POLICY_RC_D)
    path.chmod(0o755)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


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
                env={"DPKG_FRONTEND_LOCKED": "", "SYSTEMD_OFFLINE": "1"},
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
