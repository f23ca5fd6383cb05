"""Every change is atomic: killed at any point (kill -9), the sysroot keeps its
old deployments, `ostree admin status` works and `ostree fsck` is clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.reporter import NullReporter
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import REF, TOP, FixtureRepo, apt_ostree, ostree_admin_status


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted ext4 filesystem: real syncfs and FIFREEZE, unlike tmpfs."""
    image = tmp_path / "fs.img"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(512 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def start(sysroot: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "apt_ostree", "--sysroot", str(sysroot), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip


def checksums(sysroot: Path) -> list[str]:
    proc = apt_ostree(sysroot, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return [d["checksum"] for d in json.loads(proc.stdout)["deployments"]]


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.25, 0.35, 0.5, 0.8])
def test_kargs_killed_at_any_point_leaves_a_working_sysroot(
    ext4: Path, fixture_repo: FixtureRepo, delay: float
) -> None:
    sysroot = ext4 / "sysroot"
    make_sysroot(
        SysrootRequest(path=sysroot, repo=fixture_repo.path, ref=REF,
                       revision=fixture_repo.commits["1"], kargs=["quiet"]),
        NullReporter(),
    )  # fmt: skip
    before = checksums(sysroot)
    proc = start(sysroot, "kargs", "--append=interrupted=yes")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    after = checksums(sysroot)
    assert after[-1:] == before or after == before * 2, after
    assert "debian" in ostree_admin_status(sysroot)
    fsck(sysroot)
    # The lock died with the process: the next change goes through.
    done = apt_ostree(sysroot, "kargs", "--append-if-missing=interrupted=yes")
    assert done.returncode == 0, done.stderr
    fsck(sysroot)


def test_a_change_killed_while_boot_is_frozen_leaves_it_thawed(ext4: Path) -> None:
    """libostree freezes /boot's filesystem while it writes deployments; a process
    killed in that window must not leave it frozen (every later write would hang)."""
    (ext4 / "boot").mkdir()
    code = (
        "import os, signal, subprocess, sys\n"
        "from pathlib import Path\n"
        "from apt_ostree.ostree.sysroot import writing_deployments\n"
        "with writing_deployments(Path(sys.argv[1])):\n"
        "    subprocess.run(['fsfreeze', '--freeze', sys.argv[1]], check=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    proc = subprocess.run([sys.executable, "-c", code, str(ext4)], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    # A write blocks (uninterruptibly) while the filesystem is frozen.
    write = subprocess.Popen(["touch", str(ext4 / "boot/after")])
    try:
        write.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the filesystem of /boot stayed frozen after the process was killed")
    finally:
        subprocess.run(["fsfreeze", "--unfreeze", str(ext4)], check=False, capture_output=True)
        write.wait()
    assert write.returncode == 0
