"""The in-process path: open the sysroot, take the lock, call into `system`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apt_ostree.system.sysroot import Sysroot, command_line


def open_sysroot(path: Path) -> Sysroot:
    return Sysroot(path)


@contextmanager
def locked_sysroot(path: Path, command: str | None = None) -> Iterator[Sysroot]:
    """The sysroot, locked for a change, as the transaction of `command`."""
    sysroot = Sysroot(path)
    with sysroot.locked(command or command_line()) as locked:
        yield locked
