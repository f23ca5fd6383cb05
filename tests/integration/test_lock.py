"""The sysroot lock: one change at a time, and the second caller is told who holds it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from apt_ostree.system.sysroot import LockedError, Sysroot
from tests.fixtures.sysroot import TOP, SysrootFixture

HOLD = """
import sys, time
from pathlib import Path
from apt_ostree.system.sysroot import Sysroot
with Sysroot(Path(sys.argv[1])).locked("apt-ostree upgrade"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(sysroot: SysrootFixture) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the lock of `sysroot` as "apt-ostree upgrade"."""
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(sysroot.path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc
    proc.kill()
    proc.wait()


def test_second_change_fails_at_once_naming_the_holder(
    sysroot: SysrootFixture, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockedError) as e, Sysroot(sysroot.path).locked("apt-ostree rollback"):
        pass
    assert (
        str(e.value) == f'another operation is in progress (pid {holder.pid}, "apt-ostree upgrade")'
    )


def test_lock_is_released_when_the_holder_is_killed(
    sysroot: SysrootFixture, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with Sysroot(sysroot.path).locked("apt-ostree rollback") as locked:
        assert locked.deployments()


def test_lock_info_is_removed_after_the_change(sysroot: SysrootFixture) -> None:
    with Sysroot(sysroot.path).locked("apt-ostree kargs"):
        assert (sysroot.path / "ostree/apt-ostree.lock").exists()
    assert not (sysroot.path / "ostree/apt-ostree.lock").exists()


def test_status_reads_while_a_change_holds_the_lock(
    sysroot: SysrootFixture, holder: subprocess.Popen[str]
) -> None:
    from tests.fixtures.sysroot import apt_ostree

    proc = apt_ostree(sysroot.path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
