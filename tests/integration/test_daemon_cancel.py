"""A running transaction stops at a safe point when cancelled, when its client goes
away (Ctrl-C, kill), and a daemon killed mid-transaction restarts clean.

The upgrade tests pull from an HTTP server that holds every object request until
the test lets it go, so that the transaction is surely in the middle of its pull
when it is cancelled. The layering tests install a local .deb whose postinst
sleeps, so that the transaction is surely inside dpkg, with the layer's overlay
mounted, when it is cancelled or the daemon is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.client import BUS_ADDRESS_ENV
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.system.recovery import SCRATCH_PREFIXES, mounts_under
from tests.fixtures.aptrepo import DebSpec, build_deb
from tests.fixtures.daemon import Daemon, Gate, python_env, start_daemon
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.sysroot import REF, SysrootFixture, deployments_json

ORIGIN_REF = f"origin:{REF}"


def _start_cli(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "apt_ostree", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
        env=python_env(**{BUS_ADDRESS_ENV: daemon.address}),
    )  # fmt: skip


def _wait_idle(daemon: Daemon) -> None:
    client = daemon.client()
    deadline = time.monotonic() + 60
    while client.sysroot_property("ActiveTransaction") != "/":
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.05)


def _wait_for_log(daemon: Daemon, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in daemon.log.read_text():
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.05)


def _origin_ref(sysroot: Path) -> str | None:
    return ostree_repo.resolve_ref(ostree_repo.open_repo(sysroot / "ostree/repo"), ORIGIN_REF)


def _scratch(sysroot: Path) -> list[Path]:
    tmp = sysroot / "ostree/repo/tmp"
    return [p for p in tmp.iterdir() if p.name.startswith(SCRATCH_PREFIXES)]


def assert_as_before(sysroot: Path, deployments: list[dict[str, object]], ref: str | None) -> None:
    """Nothing was deployed, no ref moved, no scratch space or mount is left, and the
    lock is free."""
    assert deployments_json(sysroot) == deployments
    assert _origin_ref(sysroot) == ref
    assert _scratch(sysroot) == []
    assert mounts_under(sysroot / "ostree/repo/tmp") == []
    assert not (sysroot / "ostree/apt-ostree.lock").exists()


# -- upgrade, cancelled in its pull ------------------------------------------------------


def test_cancel_stops_an_upgrade_in_its_pull(
    daemon: Daemon, sysroot: SysrootFixture, gated_remote: Gate
) -> None:
    before, ref = deployments_json(sysroot.path), _origin_ref(sysroot.path)
    upgrade = _start_cli(daemon, "upgrade")
    assert gated_remote.waiting.wait(30), upgrade.communicate()
    # From a second session, as `apt-ostree cancel` is meant to be used. A fetch in
    # flight is not interrupted: the pull stops when it is answered.
    cancel = _start_cli(daemon, "cancel")
    _wait_for_log(daemon, "transaction 1: cancel requested")
    gated_remote.release()
    out, err = cancel.communicate(timeout=60)
    assert cancel.returncode == 0, err
    assert out == f"Cancelled: upgrade by pid {upgrade.pid}\n"
    out, err = upgrade.communicate(timeout=60)
    assert upgrade.returncode == 1
    assert err.splitlines()[-1] == "error: cancelled"
    assert "transaction 1: cancel requested" in daemon.log.read_text()
    assert_as_before(sysroot.path, before, ref)
    # The daemon is free and the next upgrade runs.
    assert daemon.cli("upgrade").returncode == 0
    assert deployments_json(sysroot.path)[0]["checksum"] == sysroot.repo.commits["3"]


def test_ctrl_c_in_the_client_cancels_the_transaction(
    daemon: Daemon, sysroot: SysrootFixture, gated_remote: Gate
) -> None:
    before, ref = deployments_json(sysroot.path), _origin_ref(sysroot.path)
    upgrade = _start_cli(daemon, "upgrade")
    assert gated_remote.waiting.wait(30), upgrade.communicate()
    upgrade.send_signal(signal.SIGINT)
    _wait_for_log(daemon, "transaction 1: cancel requested")
    gated_remote.release()
    _, err = upgrade.communicate(timeout=60)
    assert upgrade.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted"
    _wait_idle(daemon)
    assert_as_before(sysroot.path, before, ref)


def test_a_killed_client_cancels_the_transaction(
    daemon: Daemon, sysroot: SysrootFixture, gated_remote: Gate
) -> None:
    before, ref = deployments_json(sysroot.path), _origin_ref(sysroot.path)
    upgrade = _start_cli(daemon, "upgrade")
    assert gated_remote.waiting.wait(30), upgrade.communicate()
    upgrade.kill()
    upgrade.wait()
    _wait_for_log(daemon, "its caller left; cancelling")
    gated_remote.release()
    _wait_idle(daemon)
    assert_as_before(sysroot.path, before, ref)


# -- layering, cancelled or killed inside dpkg ---------------------------------------------

SLOW_POSTINST = "#!/bin/sh\nset -e\nsleep {seconds}\n"


def _slow_deb(tmp_path: Path, seconds: int) -> Path:
    spec = DebSpec(
        "slow-postinst",
        files={"usr/share/slow-postinst/data": "slow\n"},
        scripts={"postinst": SLOW_POSTINST.format(seconds=seconds)},
    )
    return build_deb(spec, tmp_path / "debs")


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"{text!r} never came; exit {proc.wait()}")


@pytest.fixture
def debian_daemon(bus: str, debian_sysroot: DebianSysroot, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(bus, debian_sysroot.path, tmp_path / "apt-ostreed.log")
    yield d
    if d.proc.poll() is None:
        assert d.stop() == 0, d.log.read_text()


def test_cancel_inside_dpkg_stops_before_the_layer_is_committed(
    debian_daemon: Daemon, debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    deb = _slow_deb(tmp_path, 3)
    before = deployments_json(debian_sysroot.path)
    install = _start_cli(debian_daemon, "install", str(deb))
    _wait_for_line(install, "Installing 1 packages with dpkg...")
    cancel = debian_daemon.cli("cancel")
    assert cancel.returncode == 0, cancel.stderr
    _, err = install.communicate(timeout=120)
    assert install.returncode == 1 and err.splitlines()[-1] == "error: cancelled"
    assert "Committing the layer" not in err
    assert_as_before(debian_sysroot.path, before, _origin_ref(debian_sysroot.path))


def test_a_daemon_killed_mid_transaction_restarts_clean(
    bus: str, debian_daemon: Daemon, debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    deb = _slow_deb(tmp_path, 30)
    before = deployments_json(debian_sysroot.path)
    install = _start_cli(debian_daemon, "install", str(deb))
    _wait_for_line(install, "Installing 1 packages with dpkg...")
    tmp = debian_sysroot.path / "ostree/repo/tmp"
    assert mounts_under(tmp), "the layer's overlay should be mounted now"
    os.kill(debian_daemon.proc.pid, signal.SIGKILL)
    debian_daemon.proc.wait()
    _, err = install.communicate(timeout=60)
    assert install.returncode == 1
    assert err.splitlines()[-1] == "error: apt-ostreed exited before the transaction finished"
    assert _scratch(debian_sysroot.path), "the killed daemon left its scratch space"
    # The next start (D-Bus activation on a real system) cleans up first.
    again = start_daemon(bus, debian_sysroot.path, tmp_path / "apt-ostreed-2.log")
    try:
        log = again.log.read_text()
        assert "left by an interrupted transaction" in log
        assert_as_before(debian_sysroot.path, before, _origin_ref(debian_sysroot.path))
        # Nothing holds the sysroot: a change goes through.
        proc = again.cli("kargs", "--append=after=kill")
        assert proc.returncode == 0, proc.stderr
    finally:
        assert again.stop() == 0
