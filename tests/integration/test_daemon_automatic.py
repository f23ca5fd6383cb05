"""Automatic updates: apt-ostreed's AutomaticUpdatePolicy decides what
`upgrade --trigger-automatic-update-policy` (apt-ostreed-automatic.service) does,
and `status` shows the update that is available or staged."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import Daemon, start_daemon
from tests.fixtures.sysroot import SysrootFixture, apt_ostree, deployments_json

TRIGGER = ("upgrade", "--trigger-automatic-update-policy")


@pytest.fixture
def configured(
    bus: str, sysroot: SysrootFixture, tmp_path: Path
) -> Iterator[Callable[[str], Daemon]]:
    """`configured(POLICY)`: apt-ostreed with that AutomaticUpdatePolicy in its config file."""
    started: list[Daemon] = []

    def start(policy: str) -> Daemon:
        config = tmp_path / "apt-ostreed.conf"
        config.write_text(f"[Daemon]\nAutomaticUpdatePolicy={policy}\n")
        d = start_daemon(
            bus, sysroot.path, tmp_path / "apt-ostreed.log", 0, "--config", str(config)
        )
        started.append(d)
        return d

    yield start
    for d in started:
        assert d.stop() == 0, d.log.read_text()


def test_policy_none_does_nothing(
    configured: Callable[[str], Daemon], sysroot: SysrootFixture
) -> None:
    daemon = configured("none")
    proc = daemon.cli(*TRIGGER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Automatic updates are not enabled; exiting...\n"
    assert len(deployments_json(sysroot.path)) == 1
    assert daemon.client().sysroot_property("AutomaticUpdatePolicy") == "none"


def test_policy_check_fetches_the_update_that_status_then_shows(
    configured: Callable[[str], Daemon], sysroot: SysrootFixture
) -> None:
    daemon = configured("check")
    assert daemon.cli("status", "--json").stdout.count('"cached-update": null') == 1
    proc = daemon.cli(*TRIGGER)
    assert proc.returncode == 0, proc.stderr
    v3 = sysroot.repo.commits["3"]
    assert proc.stdout.splitlines()[0] == "AvailableUpdate:"
    assert f"         Commit: {v3}" in proc.stdout.splitlines()
    # Nothing deployed: only the commit's metadata was fetched.
    assert len(deployments_json(sysroot.path)) == 1
    status = json.loads(daemon.cli("status", "--json").stdout)
    update = status["cached-update"]
    assert update["checksum"] == v3 and update["version"] == "3" and not update["staged"]
    assert update["diff"]["upgraded"] == [[["pkg-b", "1.0", "amd64"], ["pkg-b", "2.0", "amd64"]]]
    assert update["diff"]["added"] == [["pkg-c", "1.0", "amd64"]]
    text = daemon.cli("status").stdout.splitlines()
    assert text[text.index("AvailableUpdate:") :] == [
        "AvailableUpdate:",
        f"        Version: 3 ({_when(update['timestamp'])})",
        f"         Commit: {v3}",
        "           Diff: 1 upgraded, 1 added",
    ]
    # The in-process status reads the same repository: the same update.
    in_process = json.loads(apt_ostree(sysroot.path, "status", "--json").stdout)
    assert in_process["cached-update"] == update


def test_policy_stage_upgrades(
    configured: Callable[[str], Daemon], sysroot: SysrootFixture
) -> None:
    daemon = configured("stage")
    proc = daemon.cli(*TRIGGER)
    assert proc.returncode == 0, proc.stderr
    v3 = sysroot.repo.commits["3"]
    # Offline, the upgrade is deployed (on a booted system: staged).
    assert f"Deployed {v3} (version 3) as the default deployment of debian" in proc.stdout
    assert deployments_json(sysroot.path)[0]["checksum"] == v3
    assert json.loads(daemon.cli("status", "--json").stdout)["cached-update"] is None
    again = daemon.cli(*TRIGGER)
    assert again.returncode == 0 and again.stdout == "No upgrade available.\n"


def test_reload_reads_the_policy_again_and_refuses_a_bad_one(
    configured: Callable[[str], Daemon], sysroot: SysrootFixture, tmp_path: Path
) -> None:
    daemon = configured("none")
    config = tmp_path / "apt-ostreed.conf"
    config.write_text("[Daemon]\nAutomaticUpdatePolicy=check\n")
    assert daemon.cli("reload").returncode == 0
    assert daemon.client().sysroot_property("AutomaticUpdatePolicy") == "check"
    config.write_text("[Daemon]\nAutomaticUpdatePolicy=sometimes\n")
    proc = daemon.cli("reload")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: {config}: AutomaticUpdatePolicy=sometimes is not one of none, check, stage\n"
    )
    proc = daemon.cli(*TRIGGER)
    assert proc.returncode == 1 and "AutomaticUpdatePolicy=sometimes" in proc.stderr
    assert len(deployments_json(sysroot.path)) == 1


def test_the_trigger_needs_the_daemon(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, *TRIGGER)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --trigger-automatic-update-policy needs apt-ostreed")
    assert len(proc.stderr.splitlines()) == 1


def _when(timestamp: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
