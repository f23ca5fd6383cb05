"""`apt-ostree cleanup` on offline sysroots: deployments, pruning, caches."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.deployments import deploy_version, fsck, pull_version, sysroot_state
from tests.fixtures.sysroot import SysrootFixture, apt_ostree


def _checksums(sysroot: Path) -> list[str]:
    proc = apt_ostree(sysroot, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return [d["checksum"] for d in json.loads(proc.stdout)["deployments"]]


def _has_commit(sysroot: Path, checksum: str) -> bool:
    return ostree_repo.commit_exists(ostree_repo.open_repo(sysroot / "ostree/repo"), checksum)


def _assert_deployments_intact(sysroot: Path) -> None:
    fsck(sysroot)
    for checksum in _checksums(sysroot):
        assert _has_commit(sysroot, checksum)


def test_cleanup_without_an_option_is_an_error(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "cleanup")
    assert proc.returncode == 1
    assert proc.stderr == "error: nothing to clean up: give at least one of -p, -r, -b, -m\n"


def test_cleanup_rollback_removes_the_rollback_deployment_and_prunes_its_objects(
    sysroot: SysrootFixture,
) -> None:
    v2 = deploy_version(sysroot, "2")
    v3 = deploy_version(sysroot, "3")
    assert _checksums(sysroot.path) == [v3, v2]
    proc = apt_ostree(sysroot.path, "cleanup", "-r")
    assert proc.returncode == 0, proc.stderr
    assert f"Removed rollback deployment debian {v2}.0\n" in proc.stdout
    assert "Freed: " in proc.stdout
    assert _checksums(sysroot.path) == [v3]
    assert not (sysroot.path / f"ostree/deploy/debian/deploy/{v2}.0").exists()
    assert len(list((sysroot.path / "boot/loader/entries").glob("*.conf"))) == 1
    # v2 was pulled without a ref: only its deployment kept it.
    assert not _has_commit(sysroot.path, v2)
    _assert_deployments_intact(sysroot.path)


def test_cleanup_base_prunes_unreferenced_commits_only(sysroot: SysrootFixture) -> None:
    v3 = pull_version(sysroot, "3")
    v2 = deploy_version(sysroot, "2")
    refs_before = subprocess.run(
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "refs"], capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    proc = apt_ostree(sysroot.path, "cleanup", "-b")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Freed: ")
    assert not _has_commit(sysroot.path, v3)
    assert _checksums(sysroot.path) == [v2, sysroot.repo.commits["1"]]
    _assert_deployments_intact(sysroot.path)
    refs_after = subprocess.run(
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "refs"], capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert "origin:test/x86_64/base" in refs_after
    assert len(refs_after.splitlines()) == len(refs_before.splitlines())


def test_cleanup_pending_offline_has_nothing_to_remove(sysroot: SysrootFixture) -> None:
    deploy_version(sysroot, "2")
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "cleanup", "-p")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Deployments unchanged.\n"
    assert sysroot_state(sysroot.path) == before


def test_cleanup_rollback_keeps_a_pinned_deployment(sysroot: SysrootFixture) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    subprocess.run(
        ["ostree", "admin", "pin", f"--sysroot={sysroot.path}", "1"], check=True,
        capture_output=True,
    )  # fmt: skip
    proc = apt_ostree(sysroot.path, "cleanup", "-r")
    assert proc.returncode == 0, proc.stderr
    assert f"Kept pinned deployment debian {v1}.0\n" in proc.stdout
    assert "Deployments unchanged.\n" in proc.stdout
    assert _checksums(sysroot.path) == [v2, v1]


def test_cleanup_repomd_empties_apt_ostrees_cache(sysroot: SysrootFixture) -> None:
    cache = sysroot.path / "ostree/deploy/debian/var/cache/apt-ostree"
    (cache / "lists").mkdir(parents=True)
    (cache / "lists/InRelease").write_bytes(b"x" * 4000)
    (cache / "archives.deb").write_bytes(b"y" * 1000)
    proc = apt_ostree(sysroot.path, "cleanup", "-m")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Freed cached metadata: 5.0 kB\n"
    assert cache.is_dir() and list(cache.iterdir()) == []


def test_cleanup_fails_at_once_while_another_operation_holds_the_lock(
    sysroot: SysrootFixture,
) -> None:
    deploy_version(sysroot, "2")
    before = sysroot_state(sysroot.path)
    with Sysroot(sysroot.path).locked("apt-ostree upgrade"):
        proc = apt_ostree(sysroot.path, "cleanup", "-r", "-b")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: another operation is in progress (pid ")
    assert sysroot_state(sysroot.path) == before
