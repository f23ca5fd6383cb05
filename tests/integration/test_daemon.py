"""apt-ostreed on a private bus, serving an offline sysroot, driven by the D-Bus client.

Each test starts its own dbus-daemon (a config that lets any local user connect,
so that an unprivileged caller can be tried) and its own apt-ostreed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.client.dbus import DaemonClient, DaemonError, TransactionError
from apt_ostree.daemon.bus import ACCESS_DENIED, BUS_NAME, BUSY, INVALID_ARGUMENT
from apt_ostree.ostree import GLib
from apt_ostree.reporter import Reporter
from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.deployments import deploy_version
from tests.fixtures.sysroot import TOP, SysrootFixture, apt_ostree, deployments_json

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="needs dbus-daemon (Debian package dbus)"
)

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def bus() -> Iterator[str]:
    """A private dbus-daemon; its address. The socket's directory is world-readable
    so that `nobody` can connect too."""
    tmp = Path(tempfile.mkdtemp(prefix="apt-ostree-bus-"))
    tmp.chmod(0o755)
    config = tmp / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=tmp / "socket"))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp)


@dataclass
class Daemon:
    address: str
    proc: subprocess.Popen[str]
    log: Path

    def client(self) -> DaemonClient:
        return DaemonClient(self.address)


def start_daemon(address: str, sysroot: Path, log: Path, idle_exit: int) -> Daemon:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apt_ostree.daemon", "--bus", address,
             "--sysroot", str(sysroot), "--idle-exit", str(idle_exit)],
            stdout=err, stderr=err, text=True, env=env,
        )  # fmt: skip
    daemon = Daemon(address, proc, log)
    client = DaemonClient(address)
    deadline = time.monotonic() + 20
    while not _has_owner(client):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return daemon


def _has_owner(client: DaemonClient) -> bool:
    reply = client.connection.call_sync(
        "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
        "NameHasOwner", GLib.Variant("(s)", (BUS_NAME,)), GLib.VariantType("(b)"),
        0, -1, None,
    )  # fmt: skip
    return bool(reply.unpack()[0])


@pytest.fixture
def daemon(bus: str, sysroot: SysrootFixture, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(bus, sysroot.path, tmp_path / "apt-ostreed.log", idle_exit=0)
    yield d
    d.proc.terminate()
    assert d.proc.wait(timeout=30) == 0, d.log.read_text()


class Recorder(Reporter):
    """Keeps what the daemon reported, as (signal, text)."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.events: list[tuple[str, str]] = []

    def message(self, text: str) -> None:
        self.events.append(("Message", text))

    def task_begin(self, name: str) -> None:
        self.events.append(("TaskBegin", name))

    def task_end(self, detail: str = "") -> None:
        self.events.append(("TaskEnd", detail))

    def progress(self, text: str) -> None:
        self.events.append(("PercentProgress", text))


def _checksums(sysroot: Path) -> list[str]:
    return [d["checksum"] for d in deployments_json(sysroot)]


def test_get_status_is_what_status_json_prints(daemon: Daemon, sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    client = daemon.client()
    assert client.status() == json.loads(proc.stdout)
    assert client.sysroot_property("Path") == str(sysroot.path)
    assert client.sysroot_property("Booted") is False
    assert client.sysroot_property("ActiveTransaction") == "/"


def test_upgrade_deploys_the_new_commit_and_reports_its_steps(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    recorder = Recorder()
    daemon.client().upgrade(reporter=recorder)
    v1, v3 = sysroot.repo.commits["1"], sysroot.repo.commits["3"]
    assert _checksums(sysroot.path) == [v3, v1]
    assert ("TaskBegin", "Pulling origin:test/x86_64/base") in recorder.events
    assert any(kind == "TaskEnd" for kind, _ in recorder.events)
    assert ("Message", f"Deployed {v3} (version 3) as the default deployment of debian") in (
        recorder.events
    )


def test_kernel_args_append_shows_in_the_new_deployment(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    daemon.client().kernel_args(append=["console=ttyS0"])
    new, old = deployments_json(sysroot.path)
    assert new["checksum"] == old["checksum"] == sysroot.repo.commits["1"]
    assert "console=ttyS0" in new["kernel-arguments"]
    assert "console=ttyS0" not in old["kernel-arguments"]


def test_rollback_makes_the_previous_deployment_the_default(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    assert _checksums(sysroot.path) == [v2, v1]
    daemon.client().rollback()
    assert _checksums(sysroot.path) == [v1, v2]


def test_a_failing_request_finishes_with_the_error_and_deploys_nothing(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    with pytest.raises(TransactionError) as e:
        daemon.client().kernel_args(delete=["nosuchkarg"])
    assert str(e.value) == 'no karg "nosuchkarg" to delete'
    assert len(deployments_json(sysroot.path)) == 1
    assert "Traceback" not in daemon.log.read_text()


def test_bad_arguments_are_refused_before_any_transaction(daemon: Daemon) -> None:
    client = daemon.client()
    with pytest.raises(DaemonError) as e:
        client.cleanup(["everything"])
    assert e.value.name == INVALID_ARGUMENT
    assert 'unknown item "everything"' in str(e.value)
    with pytest.raises(DaemonError) as e:
        client.kernel_args(append=["ostree=/boot.1"])
    assert e.value.name == INVALID_ARGUMENT
    with pytest.raises(DaemonError) as e:
        client.create_transaction(
            None, "Upgrade", GLib.Variant("(a{sv})", ({"reboot": GLib.Variant("b", True)},))
        )
    assert e.value.name == INVALID_ARGUMENT
    assert client.sysroot_property("ActiveTransaction") == "/"


def test_a_second_transaction_is_busy_and_names_the_active_one(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    client = daemon.client()
    upgrade = GLib.Variant("(a{sv})", ({},))
    # Created, not started: the transaction is active until it finishes.
    first = client.create_transaction(None, "Upgrade", upgrade)
    assert client.sysroot_property("ActiveTransaction") == first
    with pytest.raises(DaemonError) as e:
        daemon.client().create_transaction(None, "Upgrade", upgrade)
    assert e.value.name == BUSY
    unique_name = client.connection.get_unique_name()
    assert str(e.value).startswith(
        f"another transaction is active: Upgrade of debian by {unique_name} (uid 0, pid "
    )
    # Reading is never busy.
    assert len(daemon.client().status()["deployments"]) == 1
    client.run_transaction(first)
    assert _checksums(sysroot.path)[0] == sysroot.repo.commits["3"]
    assert client.sysroot_property("ActiveTransaction") == "/"


def test_a_transaction_fails_with_the_lock_holders_message_while_the_cli_holds_the_lock(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    with Sysroot(sysroot.path).locked("apt-ostree upgrade"), pytest.raises(TransactionError) as e:
        daemon.client().upgrade()
    assert str(e.value) == (
        f'another operation is in progress (pid {os.getpid()}, "apt-ostree upgrade")'
    )
    assert len(deployments_json(sysroot.path)) == 1
    # The lock is free again: the next transaction runs.
    daemon.client().upgrade()
    assert len(deployments_json(sysroot.path)) == 2


def test_a_cancelled_transaction_that_never_started_frees_the_daemon(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    client = daemon.client()
    first = client.create_transaction(None, "Rollback", GLib.Variant("(a{sv})", ({},)))
    client.cancel(first)
    assert client.sysroot_property("ActiveTransaction") == "/"
    client.kernel_args(append=["quiet2"])
    assert len(deployments_json(sysroot.path)) == 2


CREATE_AND_LEAVE = """
import sys
from apt_ostree.client.dbus import DaemonClient
from apt_ostree.ostree import GLib
print(DaemonClient(sys.argv[1]).create_transaction(None, "Upgrade", GLib.Variant("(a{sv})", ({},))))
"""


def test_a_transaction_whose_caller_left_before_start_is_dropped(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", CREATE_AND_LEAVE, daemon.address],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert proc.stdout.startswith("/org/aptostree/dev/Transaction/")
    client = daemon.client()
    deadline = time.monotonic() + 10
    while client.sysroot_property("ActiveTransaction") != "/":
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.05)
    assert "its caller left before Start(); dropped" in daemon.log.read_text()
    assert len(deployments_json(sysroot.path)) == 1


UNPRIVILEGED = """
import json, sys
from apt_ostree.client.dbus import DaemonClient, DaemonError
client = DaemonClient(sys.argv[1])
out = {"deployments": len(client.status()["deployments"])}
try:
    client.upgrade()
except DaemonError as e:
    out["error"] = [e.name, str(e)]
print(json.dumps(out))
"""


def test_an_unprivileged_caller_may_read_but_not_change(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-c", UNPRIVILEGED, daemon.address],
        capture_output=True, text=True, env=env, cwd="/", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["deployments"] == 1
    assert out["error"] == [
        ACCESS_DENIED,
        "polkit authorization is not implemented yet: only root may call Upgrade",
    ]
    assert len(deployments_json(sysroot.path)) == 1


def test_the_daemon_exits_by_itself_when_idle(
    bus: str, sysroot: SysrootFixture, tmp_path: Path
) -> None:
    d = start_daemon(bus, sysroot.path, tmp_path / "apt-ostreed.log", idle_exit=1)
    assert d.client().status()["deployments"]
    assert d.proc.wait(timeout=15) == 0, d.log.read_text()
    assert not _has_owner(DaemonClient(bus))
    assert "idle for 1s; exiting" in d.log.read_text()
