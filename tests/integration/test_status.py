"""`apt-ostree status` on offline sysroots."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.sysroot import REF, SysrootFixture, apt_ostree


def test_status_json_lists_the_deployment_with_rpm_ostree_keys(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    [d] = status["deployments"]
    assert d["checksum"] == sysroot.repo.commits["1"]
    assert d["origin"] == f"origin:{REF}"
    assert d["version"] == "1"
    assert d["osname"] == "debian"
    assert d["booted"] is False and d["staged"] is False and d["pinned"] is False
    assert d["requested-packages"] == [] and d["packages"] == [] and d["base-removals"] == []
    assert d["id"] == f"debian-{d['checksum']}.0"
    assert {"transaction", "cached-update"} <= status.keys()


def test_status_text_shows_version_and_commit(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "status")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("State: idle\nDeployments:\n")
    assert f"origin:{REF}" in proc.stdout
    assert f"Commit: {sysroot.repo.commits['1']}" in proc.stdout
    assert "Version: 1 (" in proc.stdout


def test_status_on_a_directory_that_is_not_a_sysroot_is_an_error(tmp_path: Path) -> None:
    proc = apt_ostree(tmp_path, "status")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {tmp_path} is not an OSTree sysroot (no ostree/repo, ostree/deploy)"
    )


def test_status_on_a_machine_not_booted_from_ostree_is_an_error() -> None:
    if Path("/run/ostree-booted").exists():
        return
    proc = apt_ostree(None, "status")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: this system is not booted from an OSTree deployment;"
        " use --sysroot PATH to work on an offline sysroot"
    )
