"""`apt-ostree status` on offline sysroots."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fixtures.deployments import sysroot_state
from tests.fixtures.sysroot import REF, SysrootFixture, apt_ostree, deployments_json


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


def test_status_shows_a_hotfix_unlocked_deployment(sysroot: SysrootFixture) -> None:
    # libostree records `ostree admin unlock --hotfix` in the deployment's origin.
    assert deployments_json(sysroot.path)[0]["unlocked"] == "none"
    (origin,) = (sysroot.path / "ostree/deploy/debian/deploy").glob("*.origin")
    origin.write_text(origin.read_text().replace("[origin]\n", "[origin]\nunlocked=hotfix\n"))
    assert deployments_json(sysroot.path)[0]["unlocked"] == "hotfix"
    proc = apt_ostree(sysroot.path, "status")
    assert "Unlocked: hotfix" in proc.stdout.replace("  ", "")


def test_usroverlay_of_an_offline_sysroot_fails_in_one_line_and_changes_nothing(
    sysroot: SysrootFixture,
) -> None:
    before = sysroot_state(sysroot.path)
    for argv in (["usroverlay"], ["unlock", "--hotfix"]):
        proc = apt_ostree(sysroot.path, *argv)
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: cannot unlock /usr: ")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sysroot_state(sysroot.path) == before
    assert deployments_json(sysroot.path)[0]["unlocked"] == "none"


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


FINALIZE_SCRIPT = Path(__file__).resolve().parents[2] / "data/lib/finalize-staged-result"


def _write_failure_record(sysroot: SysrootFixture, boot_id: str = "0" * 32) -> Path:
    record = sysroot.path / "ostree/deploy/debian/var/lib/apt-ostree/finalize-failure"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        f"boot-id={boot_id}\ntime=2026-11-25T10:00:00Z\nresult=exit-code\n"
        "message=error: Installing kernel: No space left on device\n"
    )
    return record


def test_status_reports_a_failed_finalization_of_the_previous_boot(
    sysroot: SysrootFixture,
) -> None:
    _write_failure_record(sysroot)
    proc = apt_ostree(sysroot.path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["finalize-failure"] == {
        "osname": "debian",
        "time": "2026-11-25T10:00:00Z",
        "result": "exit-code",
        "message": "error: Installing kernel: No space left on device",
    }
    text = apt_ostree(sysroot.path, "status").stdout.splitlines()
    assert text[1] == (
        "Warning: failed to finalize previous deployment (exit-code at 2026-11-25T10:00:00Z)"
    )
    assert text[2].strip() == "error: Installing kernel: No space left on device"
    assert text[4] == "Deployments:"


def test_status_without_a_failure_record_has_null_finalize_failure(
    sysroot: SysrootFixture,
) -> None:
    proc = apt_ostree(sysroot.path, "status", "--json")
    assert json.loads(proc.stdout)["finalize-failure"] is None
    assert "Warning" not in apt_ostree(sysroot.path, "status").stdout


def _run_finalize_script(var: Path, result: str) -> None:
    # The unit's ExecStopPost= writes to /var/lib/apt-ostree: give it a private /var.
    # The script is bound at a fixed path: the checkout itself may lie under /var.
    script = "/tmp/finalize-staged-result"
    subprocess.run(
        ["bwrap", "--bind", "/", "/", "--bind", str(var), "/var", "--dev", "/dev",
         "--proc", "/proc", "--tmpfs", "/tmp", "--ro-bind", str(FINALIZE_SCRIPT), script,
         "--setenv", "SERVICE_RESULT", result, script],
        check=True, capture_output=True,
    )  # fmt: skip


def test_finalize_result_hook_records_a_failure_and_ignores_success(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    _run_finalize_script(var, "success")
    assert not (var / "lib/apt-ostree/finalize-failure").exists()
    _run_finalize_script(var, "exit-code")
    fields = dict(
        line.split("=", 1)
        for line in (var / "lib/apt-ostree/finalize-failure").read_text().splitlines()
    )
    assert fields["result"] == "exit-code"
    assert fields["boot-id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert set(fields) == {"boot-id", "time", "result", "message"}


def test_a_new_deployment_clears_the_failure_record(sysroot: SysrootFixture) -> None:
    record = _write_failure_record(sysroot)
    proc = apt_ostree(sysroot.path, "kargs", "--append=after=failure")
    assert proc.returncode == 0, proc.stderr
    assert not record.exists()
    assert (
        json.loads(apt_ostree(sysroot.path, "status", "--json").stdout)["finalize-failure"] is None
    )
