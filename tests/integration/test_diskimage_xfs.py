"""`apt-ostree compose disk-image --root-fs xfs`: the OSTree sysroot on an xfs root.

One 2G BIOS image of the Debian base commit (fake kernel: nothing here boots it)
is built with the CLI, then inspected through a read-only loop device: the
partition types, `xfs_repair -n`, the sysroot on the mounted root, and the
kernel command line in the BLS entry and grub.cfg on /boot. /boot stays ext4.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.debianbase import DebianBase
from tests.fixtures.sysroot import apt_ostree

TOP = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Partitions:
    boot: Path
    root: Path


def blkid(device: Path) -> dict[str, str]:
    """The superblock's fields, probed directly (no blkid cache, no udev)."""
    proc = subprocess.run(["blkid", "-p", "-o", "export", device],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


@contextlib.contextmanager
def mounted_ro(device: Path, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "ro", device, target], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", target], check=True)


@pytest.fixture(scope="module")
def xfs_image(debian_base: DebianBase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("disk-xfs") / "disk.raw"
    proc = apt_ostree(None, "compose", "disk-image", out, "--repo", debian_base.repo,
                      "--ref", debian_base.ref, "--size", "2G", "--root-fs", "xfs")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def partitions(xfs_image: Path) -> Iterator[Partitions]:
    """The image on a read-only loop device, by partition name."""
    dev = subprocess.run(["losetup", "--show", "-f", "-P", "-r", xfs_image],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    try:
        # Without udev the partition nodes may need partx.
        subprocess.run(["partx", "-a", dev], capture_output=True, check=False)
        table = json.loads(subprocess.run(["sfdisk", "--json", dev], capture_output=True,
                                          text=True, check=True).stdout)  # fmt: skip
        nodes = {p["name"]: Path(p["node"]) for p in table["partitiontable"]["partitions"]}
        for _ in range(50):
            if nodes["boot"].exists() and nodes["root"].exists():
                break
            time.sleep(0.1)
        yield Partitions(boot=nodes["boot"], root=nodes["root"])
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.fixture(scope="module")
def root_uuid(partitions: Partitions) -> str:
    return blkid(partitions.root)["UUID"]


def test_root_partition_is_xfs_and_boot_stays_ext4(partitions: Partitions) -> None:
    root, boot = blkid(partitions.root), blkid(partitions.boot)
    assert (root["TYPE"], root["LABEL"]) == ("xfs", "root")
    assert (boot["TYPE"], boot["LABEL"]) == ("ext4", "boot")


def test_xfs_repair_finds_nothing_to_repair(partitions: Partitions) -> None:
    proc = subprocess.run(["xfs_repair", "-n", partitions.root], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_root_holds_the_sysroot_with_one_deployment(
    partitions: Partitions, root_uuid: str, tmp_path: Path, debian_base: DebianBase
) -> None:
    with mounted_ro(partitions.root, tmp_path / "root") as root:
        deployments = sorted(root.glob("ostree/deploy/*/deploy/*.0"))
        assert [d.name for d in deployments] == [f"{debian_base.checksum}.0"]
        fstab = (deployments[0] / "etc/fstab").read_text().splitlines()
        # The deployments' /tmp links to sysroot/tmp: it must exist, sticky and open to all.
        assert (deployments[0] / "tmp").readlink() == Path("sysroot/tmp")
        assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert f"UUID={root_uuid} / xfs defaults 1 1" in fstab


def test_kernel_command_line_names_the_xfs_root(
    partitions: Partitions, root_uuid: str, tmp_path: Path
) -> None:
    with mounted_ro(partitions.boot, tmp_path / "boot") as boot:
        (entry,) = (boot / "loader/entries").glob("*.conf")
        options = [line for line in entry.read_text().splitlines() if line.startswith("options ")]
        grub_cfg = (boot / "grub/grub.cfg").read_text()
    assert f"root=UUID={root_uuid}" in options[0].split()
    assert f"root=UUID={root_uuid}" in grub_cfg


def test_unknown_root_fs_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "disk.raw"
    proc = apt_ostree(None, "compose", "disk-image", out, "--repo", tmp_path / "repo",
                      "--ref", "test/x86_64", "--root-fs", "btrfs")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ['error: --root-fs "btrfs": expected one of ext4, xfs']
    assert list(tmp_path.iterdir()) == []


def test_missing_mkfs_xfs_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "disk.raw"
    # mkfs.xfs lives in /usr/sbin: a PATH without it is a host without xfsprogs.
    env = dict(os.environ, PATH="/usr/bin:/bin", PYTHONPATH=str(TOP / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "apt_ostree", "compose", "disk-image", str(out),
         "--repo", str(tmp_path / "repo"), "--ref", "test/x86_64", "--root-fs", "xfs"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["error: --root-fs xfs needs mkfs.xfs; install xfsprogs"]
    assert list(tmp_path.iterdir()) == []
