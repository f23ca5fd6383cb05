"""What a transaction killed mid-way (kill -9, a crash, a power cut) leaves behind,
removed when apt-ostreed starts again.

Every change is atomic for the deployments (libostree writes them by rename, a
pull writes its refs at the end, a layer commit sets no ref), so what is left
is scratch space: the overlay a layer was built in, still mounted; the
hardlink checkout of a base; the copies of a caller's .debs; the lock's record
of who held it. libostree's own lock is a flock and died with the process.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.ostree import sysroot as ostree_sysroot
from apt_ostree.run import run
from apt_ostree.system.sysroot import Sysroot, lock_info_path

# The scratch directories that layering (system/layering.py) and the daemon's
# file descriptors (system/operations.py) make in the repo's tmp/.
SCRATCH_PREFIXES = ("apt-ostree-layer-", "apt-ostree-base-", "apt-ostree-fds-")


@dataclass
class Recovered:
    unmounted: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    skipped: str | None = None  # why nothing was done


def _unescape(field: str) -> str:
    """A mount point as /proc/self/mountinfo writes it (octal escapes: \\040 = space)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(top: Path) -> list[Path]:
    """Mount points below `top`, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(_unescape(line.split()[4]))
        if point.is_relative_to(top) and point != top:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def recover(sysroot_path: Path) -> Recovered:
    """Remove what an interrupted transaction left, if nobody holds the sysroot now
    (an in-process `apt-ostree --sysroot` may be using its scratch directories)."""
    result = Recovered()
    sysroot = Sysroot(sysroot_path)
    if not ostree_sysroot.try_lock(sysroot.ostree):
        result.skipped = "the sysroot is locked by another process"
        return result
    try:
        tmp = (sysroot.path / "ostree/repo/tmp").resolve()
        scratch = [
            p
            for p in (tmp.iterdir() if tmp.is_dir() else [])
            if p.name.startswith(SCRATCH_PREFIXES)
        ]
        for directory in scratch:
            for point in mounts_under(directory):
                run(["umount", "-l", str(point)], what=f"umount {point}")
                result.unmounted.append(point)
            shutil.rmtree(directory, ignore_errors=True)
            result.removed.append(directory)
        # Nobody holds the lock: a record of a holder is stale.
        lock_info_path(sysroot.path, sysroot.booted).unlink(missing_ok=True)
    finally:
        sysroot.ostree.unlock()
    return result
