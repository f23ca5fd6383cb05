"""Health-checked boot off the machine: settings, the checks, the failure records, status."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.cli.status import describe_boot_failure
from apt_ostree.daemon.config import load_config
from apt_ostree.settings import ConfigError, HealthSettings, load_health_settings
from apt_ostree.system import bootfailures
from apt_ostree.system.healthchecks import find_checks, run_checks

TOP = Path(__file__).resolve().parents[2]


def test_the_shipped_config_is_the_defaults() -> None:
    assert load_health_settings(TOP / "data/etc/apt-ostreed.conf") == HealthSettings()
    assert load_config(TOP / "data/etc/apt-ostreed.conf").health == HealthSettings()


def test_the_off_switch_and_the_attempts_are_read(tmp_path: Path) -> None:
    conf = tmp_path / "apt-ostreed.conf"
    conf.write_text("[Daemon]\nAutomaticUpdatePolicy=stage\n[Health]\nEnabled=no\nBootAttempts=1\n")
    assert load_health_settings(conf) == HealthSettings(enabled=False, boot_attempts=1)
    assert load_config(conf).automatic_update_policy == "stage"


@pytest.mark.parametrize(("line", "error"), [
    ("BootAttempts=0", "BootAttempts=0 is not a number from 1 to 9"),
    ("BootAttempts=10", "BootAttempts=10 is not a number from 1 to 9"),
    ("CheckTimeoutSec=soon", "CheckTimeoutSec=soon is not a number from 1 to 86400"),
    ("Enabled=maybe", "Enabled=maybe is not yes or no"),
])  # fmt: skip
def test_a_bad_health_setting_is_refused_with_the_file_and_value(
    tmp_path: Path, line: str, error: str
) -> None:
    conf = tmp_path / "apt-ostreed.conf"
    conf.write_text(f"[Health]\n{line}\n")
    with pytest.raises(ConfigError, match=f"^{conf}: {error}$"):
        load_health_settings(conf)
    with pytest.raises(ConfigError):  # `apt-ostree reload` says so too
        load_config(conf)


def script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_checks_of_etc_replace_or_mask_those_of_usr_and_run_in_name_order(tmp_path: Path) -> None:
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    script(usr / "required.d/20-disk", "echo usr disk")
    script(usr / "required.d/10-net", "echo usr net")
    script(usr / "required.d/30-masked", "exit 1")
    script(etc / "required.d/20-disk", "echo etc disk")
    (etc / "required.d/30-masked").symlink_to("/dev/null")
    (etc / "required.d/40-not-executable").write_text("#!/bin/sh\nexit 1\n")
    assert find_checks("required", (usr, etc)) == [usr / "required.d/10-net",
                                                   etc / "required.d/20-disk"]  # fmt: skip
    results = run_checks(30, (usr, etc))
    assert [(r.name, r.ok, r.output) for r in results] == [
        ("10-net", True, "usr net"), ("20-disk", True, "etc disk")]  # fmt: skip


def test_a_failing_or_hanging_check_says_why_and_wanted_ones_do_not_count(tmp_path: Path) -> None:
    script(tmp_path / "required.d/50-app", "echo app is down; exit 3")
    script(tmp_path / "required.d/60-slow", "sleep 30")
    script(tmp_path / "wanted.d/10-extra", "exit 1")
    results = {r.name: r for r in run_checks(1, (tmp_path,))}
    assert results["50-app"].output == "app is down\nexit status 3" and results["50-app"].required
    assert not results["60-slow"].ok and results["60-slow"].output == "timed out after 1s"
    assert not results["10-extra"].ok and not results["10-extra"].required
    assert results["10-extra"].label == "wanted check 10-extra"


FAILURE = {"deployment": "debian-abc.0", "osname": "debian", "checksum": "abc",
           "base-checksum": "base1", "version": "12.1", "kernel-arguments": [],
           "time": "2026-01-01T00:00:00Z", "reason": "required check 50-app failed: down",
           "check": "required check 50-app", "rolled-back-to": "debian-old.0"}  # fmt: skip


def test_a_failure_is_reported_until_the_next_change_and_its_base_remembered(
    tmp_path: Path,
) -> None:
    (tmp_path / "ostree/deploy/debian").mkdir(parents=True)
    bootfailures.record_failure(tmp_path, "debian", FAILURE)
    bootfailures.record_failure(tmp_path, "debian", FAILURE)  # recorded again: kept once
    assert bootfailures.last_failure(tmp_path, ["debian"]) == FAILURE
    bootfailures.clear_last(tmp_path, "debian")
    assert bootfailures.last_failure(tmp_path, ["debian"]) is None
    assert bootfailures.failures_of_base(tmp_path, "debian", "base1") == [FAILURE]
    assert bootfailures.failures_of_base(tmp_path, "debian", "base2") == []


def test_the_check_failure_of_a_boot_is_found_for_its_deployment_only(tmp_path: Path) -> None:
    record = {"deployment": "debian-abc.0", "boot-id": "b", "time": "t", "check": "c",
              "output": "o"}  # fmt: skip
    bootfailures.record_check_failure(tmp_path, "debian", record)
    assert bootfailures.check_failure_of(tmp_path, "debian", "debian-abc.0") == record
    assert bootfailures.check_failure_of(tmp_path, "debian", "debian-def.0") is None


def test_status_text_says_which_deployment_failed_when_and_why() -> None:
    failure = {**FAILURE, "reason": "required check 50-app failed: down\nexit status 3"}
    assert describe_boot_failure(failure) == [
        "Warning: deployment debian-abc.0 (version 12.1) failed to boot at 2026-01-01T00:00:00Z;"
        " rolled back to debian-old.0",
        "         why: required check 50-app failed: down",
        "              exit status 3",
    ]
    assert describe_boot_failure(None) == []
