"""`apt-ostree rollback` on offline sysroots: the first two deployments swap places."""

from __future__ import annotations

import json
import time
from pathlib import Path

from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.deployments import deploy_version, fsck, sysroot_state
from tests.fixtures.sysroot import SysrootFixture, apt_ostree, ostree_admin_status


def _checksums(sysroot: Path) -> list[str]:
    proc = apt_ostree(sysroot, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return [d["checksum"] for d in json.loads(proc.stdout)["deployments"]]


def _admin_status_checksums(sysroot: Path) -> list[str]:
    lines = ostree_admin_status(sysroot).splitlines()
    return [
        line.split()[-1].rsplit(".", 1)[0] for line in lines if line.lstrip().startswith("debian ")
    ]


def _linux_lines(entries: dict[str, str]) -> list[str]:
    return sorted(
        line for e in entries.values() for line in e.splitlines() if line.startswith("linux")
    )


def test_rollback_makes_the_previous_deployment_the_default(sysroot: SysrootFixture) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    assert _checksums(sysroot.path) == [v2, v1]
    proc = apt_ostree(sysroot.path, "rollback")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Moving '{v1}.0' to be first deployment\n")
    assert "Downgraded:\n  pkg-b 2.0 -> 1.0\n" in proc.stdout
    assert _checksums(sysroot.path) == [v1, v2]
    assert _admin_status_checksums(sysroot.path) == [v1, v2]
    fsck(sysroot.path)


def test_rollback_twice_restores_the_original_order(sysroot: SysrootFixture) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    for expected in ([v1, v2], [v2, v1]):
        proc = apt_ostree(sysroot.path, "rollback")
        assert proc.returncode == 0, proc.stderr
        assert _admin_status_checksums(sysroot.path) == expected


def test_rollback_keeps_every_deployment_and_its_boot_entry(sysroot: SysrootFixture) -> None:
    deploy_version(sysroot, "2")
    _, entries_before, deployments_before = sysroot_state(sysroot.path)
    assert apt_ostree(sysroot.path, "rollback").returncode == 0
    _, entries_after, deployments_after = sysroot_state(sysroot.path)
    assert deployments_after == deployments_before
    assert _linux_lines(entries_after) == _linux_lines(entries_before)
    assert len(_linux_lines(entries_after)) == 2


def test_rollback_with_only_one_deployment_is_an_error_and_changes_nothing(
    sysroot: SysrootFixture,
) -> None:
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "rollback")
    assert proc.returncode == 1
    assert proc.stderr == "error: no rollback deployment\n"
    assert proc.stdout == ""
    assert sysroot_state(sysroot.path) == before


def test_rollback_reboot_on_an_offline_sysroot_is_an_error_and_changes_nothing(
    sysroot: SysrootFixture,
) -> None:
    deploy_version(sysroot, "2")
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "rollback", "--reboot")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: --reboot needs the booted system; {sysroot.path} is an offline sysroot\n"
    )
    assert sysroot_state(sysroot.path) == before


def test_rollback_fails_at_once_while_another_operation_holds_the_lock(
    sysroot: SysrootFixture,
) -> None:
    deploy_version(sysroot, "2")
    before = sysroot_state(sysroot.path)
    with Sysroot(sysroot.path).locked("apt-ostree upgrade"):
        proc = apt_ostree(sysroot.path, "rollback")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: another operation is in progress (pid ")
    assert sysroot_state(sysroot.path) == before


def test_rollback_takes_less_than_a_second_offline(sysroot: SysrootFixture) -> None:
    deploy_version(sysroot, "2")
    start = time.monotonic()
    proc = apt_ostree(sysroot.path, "rollback")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    print(f"rollback: {elapsed:.3f} s wall (CLI, offline, tmpfs)")
    assert elapsed < 1.0
