"""A full /boot is refused before a deployment is written, on offline sysroots.

The sysroot's /boot is its own small tmpfs (so libostree copies the kernel
instead of hardlinking it), filled until only a few MiB are free. The repo has
commits whose kernels are a few MiB: "small" (the usual fake kernel), "big"
and "big-same" (one 3 MiB kernel, different trees), and "big-other" (another
3 MiB kernel, the tip).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.compose.commit import CommitRequest, commit_tree
from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.bootfs import kernel_layout
from apt_ostree.reporter import NullReporter
from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.deployments import sysroot_state
from tests.fixtures.sysroot import KVER, REF, FixtureRepo, apt_ostree, deployments_json
from tests.fixtures.trees import make_tree

MiB = 1024 * 1024
KERNEL_SIZE = 3 * MiB
BOOT_SIZE = 8 * MiB


def _commit(repo: Path, work: Path, name: str, kernel: bytes | None) -> str:
    root = make_tree(work / f"root-{name}", kernel=KVER)
    if kernel is not None:
        (root / f"boot/vmlinuz-{KVER}").write_bytes(kernel)
    (root / "usr/lib/fixture-version").write_text(name + "\n")
    postprocess_tree(root, PostprocessOptions())
    checksum = commit_tree(CommitRequest(repo=repo, ref=REF, rootfs=root, version=name)).checksum
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return checksum


@pytest.fixture(scope="module")
def kernels_repo(tmp_path_factory: pytest.TempPathFactory) -> FixtureRepo:
    work = tmp_path_factory.mktemp("boot-space-commits")
    repo = work / "repo"
    kernel_a = random.Random(1).randbytes(KERNEL_SIZE)
    kernel_b = random.Random(2).randbytes(KERNEL_SIZE)
    commits = {
        name: _commit(repo, work, name, kernel)
        for name, kernel in (
            ("small", None), ("big", kernel_a), ("big-same", kernel_a), ("big-other", kernel_b),
        )
    }  # fmt: skip
    return FixtureRepo(repo, REF, commits)


def _mount_boot_tmpfs(sysroot: Path) -> None:
    """Move the sysroot's /boot onto its own small tmpfs."""
    boot, saved = sysroot / "boot", sysroot / "boot.saved"
    boot.rename(saved)
    boot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={BOOT_SIZE}", "tmpfs", boot], check=True)
    shutil.copytree(saved, boot, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(saved)


def _leave_free(boot: Path, free: int) -> None:
    st = os.statvfs(boot)
    with (boot / "filler").open("ab") as filler:  # on top of an earlier filler
        filler.write(b"\0" * (st.f_bavail * st.f_frsize - free))
    st = os.statvfs(boot)
    assert st.f_bavail * st.f_frsize == free


def _make(tmpfs: Path, repo: FixtureRepo, start: str) -> Iterator[Path]:
    path = tmpfs / "sysroot"
    make_sysroot(
        SysrootRequest(
            path=path, repo=repo.path, ref=REF, kargs=["quiet"], remote="origin",
            remote_url=repo.url, gpg_verify=False, revision=repo.commits[start],
        ),
        NullReporter(),
    )  # fmt: skip
    _mount_boot_tmpfs(path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path / "boot"], check=False)


@pytest.fixture
def small_sysroot(tmpfs: Path, kernels_repo: FixtureRepo) -> Iterator[Path]:
    """The "small" commit deployed; 2 MiB free in /boot: less than a big kernel + margin."""
    for path in _make(tmpfs, kernels_repo, "small"):
        _leave_free(path / "boot", 2 * MiB)
        yield path


@pytest.fixture
def big_sysroot(tmpfs: Path, kernels_repo: FixtureRepo) -> Iterator[Path]:
    """The "big" commit deployed; 2 MiB free in /boot: the margin, not another kernel."""
    for path in _make(tmpfs, kernels_repo, "big"):
        _leave_free(path / "boot", 2 * MiB)
        yield path


def _boot_tree(sysroot: Path) -> dict[str, int]:
    boot = sysroot / "boot"
    return {
        str(p.relative_to(boot)): p.lstat().st_size
        for p in sorted(boot.rglob("*"))
        if p.name != "filler"
    }


def _assert_refused(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "not enough space in /boot" in ln]
    assert line.startswith("error: not enough space in /boot for the new deployment: needs 4.")
    assert line.endswith(
        ' MB, 2.1 MB free (remove old deployments with "apt-ostree cleanup -r"'
        " or free space in /boot)"
    )
    assert "Traceback" not in proc.stderr


def _deployments(sysroot: Path) -> list[dict[str, Any]]:
    """The deployments as status shows them, without the pending-base-* keys: the
    refused commit was fetched before the check, and status rightly names it as the
    origin's newer commit in the repository (as after `upgrade --download-only`)."""
    return [
        {k: v for k, v in d.items() if not k.startswith("pending-base-")}
        for d in deployments_json(sysroot)
    ]


@pytest.mark.parametrize("command", ["upgrade", "deploy"])
def test_a_kernel_that_does_not_fit_in_boot_is_refused_before_any_change(
    small_sysroot: Path, kernels_repo: FixtureRepo, command: str
) -> None:
    # sysroot_state: the /boot/loader link, the BLS entries, the deployment directories.
    before = (_deployments(small_sysroot), sysroot_state(small_sysroot))
    boot_before = _boot_tree(small_sysroot)
    args = ["upgrade"] if command == "upgrade" else ["deploy", kernels_repo.commits["big"]]
    _assert_refused(apt_ostree(small_sysroot, *args))
    assert (_deployments(small_sysroot), sysroot_state(small_sysroot)) == before
    assert _boot_tree(small_sysroot) == boot_before


def test_the_same_kernel_with_other_kargs_needs_only_the_margin(big_sysroot: Path) -> None:
    proc = apt_ostree(big_sysroot, "kargs", "--append", "console=ttyS0")
    assert proc.returncode == 0, proc.stderr
    assert len(deployments_json(big_sysroot)) == 2


def test_a_commit_with_the_same_kernel_needs_only_the_margin(
    big_sysroot: Path, kernels_repo: FixtureRepo
) -> None:
    proc = apt_ostree(big_sysroot, "deploy", kernels_repo.commits["big-same"])
    assert proc.returncode == 0, proc.stderr
    new, old = deployments_json(big_sysroot)
    assert new["checksum"] == kernels_repo.commits["big-same"]
    assert old["checksum"] == kernels_repo.commits["big"]
    # Both deployments boot the one kernel copy.
    assert len(list((big_sysroot / "boot/ostree").iterdir())) == 1


def test_a_commit_with_another_kernel_is_refused_with_the_same_free_space(
    big_sysroot: Path, kernels_repo: FixtureRepo
) -> None:
    before = sysroot_state(big_sysroot)
    _assert_refused(apt_ostree(big_sysroot, "deploy", kernels_repo.commits["big-other"]))
    assert sysroot_state(big_sysroot) == before


def test_boot_on_the_same_mount_as_the_deployments_needs_only_the_margin(
    tmp_path: Path, kernels_repo: FixtureRepo
) -> None:
    # libostree hardlinks the kernel from the deployment into /boot: nothing is copied.
    mnt = tmp_path / "small-root"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], check=True)
    try:
        path = mnt / "sysroot"
        make_sysroot(
            SysrootRequest(
                path=path, repo=kernels_repo.path, ref=REF, remote="origin",
                remote_url=kernels_repo.url, gpg_verify=False,
                revision=kernels_repo.commits["small"],
            ),
            NullReporter(),
        )  # fmt: skip
        big = kernels_repo.commits["big"]
        subprocess.run(
            ["ostree", f"--repo={path}/ostree/repo", "pull-local", kernels_repo.path, big],
            check=True, capture_output=True,
        )  # fmt: skip
        _leave_free(path / "boot", 2 * MiB)
        proc = apt_ostree(path, "deploy", big)
        assert proc.returncode == 0, proc.stderr
        assert deployments_json(path)[0]["checksum"] == big
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def test_kernel_layout_lists_what_libostree_installs_in_boot(
    big_sysroot: Path, kernels_repo: FixtureRepo
) -> None:
    s = Sysroot(big_sysroot)
    layout = kernel_layout(s.repo, kernels_repo.commits["big"])
    assert layout is not None
    [deployment] = s.deployment_objects()
    bootdir = big_sysroot / f"boot/ostree/debian-{deployment.get_bootcsum()}"
    assert {f.name: f.size for f in layout.files} == {
        p.name: p.stat().st_size for p in bootdir.iterdir()
    }
    assert [f.name for f in layout.files] == [f"vmlinuz-{KVER}", f"initramfs-{KVER}.img"]
    # The bootcsum is libostree's sha256 over the kernel, then the initramfs.
    sha = hashlib.sha256()
    for f in layout.files:
        sha.update((bootdir / f.name).read_bytes())
    assert sha.hexdigest() == deployment.get_bootcsum()
    # Commits with the same boot files are recognized without reading them.
    repo = ostree_repo.open_repo(kernels_repo.path)
    same = kernel_layout(repo, kernels_repo.commits["big-same"])
    other = kernel_layout(repo, kernels_repo.commits["big-other"])
    assert same is not None and same.identity == layout.identity
    assert other is not None and other.identity != layout.identity


def test_rollback_with_a_full_boot_is_refused_before_any_change(big_sysroot: Path) -> None:
    proc = apt_ostree(big_sysroot, "kargs", "--append", "console=ttyS0")
    assert proc.returncode == 0, proc.stderr
    _leave_free(big_sysroot / "boot", 64 * 1024)
    before = (deployments_json(big_sysroot), sysroot_state(big_sysroot))
    proc = apt_ostree(big_sysroot, "rollback")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().startswith("error: not enough space in /boot")
    assert (deployments_json(big_sysroot), sysroot_state(big_sysroot)) == before
