"""apt-ostreed's D-Bus API on a private bus, serving an offline sysroot, driven by the
client library (tests/fixtures/daemon.py starts a dbus-daemon and a daemon per test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apt_ostree.client.dbus import DaemonClient, DaemonError, TransactionError
from apt_ostree.daemon.bus import BUSY, INVALID_ARGUMENT
from apt_ostree.ostree import Gio, GLib
from apt_ostree.reporter import Reporter
from apt_ostree.requests import Request
from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.daemon import Daemon, has_owner, python_env, start_daemon
from tests.fixtures.deployments import deploy_version
from tests.fixtures.sysroot import SysrootFixture, apt_ostree, deployments_json

UPGRADE = Request("Upgrade")


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
    assert client.sysroot_property("DefaultOS") == "/org/aptostree/dev/OS/debian"


def test_upgrade_deploys_the_new_commit_and_reports_its_steps_and_result(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    recorder = Recorder()
    result = daemon.client().transact(Request("Upgrade"), recorder)
    v1, v3 = sysroot.repo.commits["1"], sysroot.repo.commits["3"]
    assert _checksums(sysroot.path) == [v3, v1]
    assert ("TaskBegin", "Pulling origin:test/x86_64/base") in recorder.events
    assert any(kind == "TaskEnd" for kind, _ in recorder.events)
    assert result["changed"] and not result["staged"]
    assert result["new"]["checksum"] == v3 and result["new"]["version"] == "3"
    assert result["diff"]["added"] == [["pkg-c", "1.0", "amd64"]]


def test_kernel_args_append_shows_in_the_new_deployment(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    request = Request("KernelArgs", [["console=ttyS0"], []])
    assert daemon.client().transact(request, Recorder()) == {"changed": True, "booted": False}
    new, old = deployments_json(sysroot.path)
    assert new["checksum"] == old["checksum"] == sysroot.repo.commits["1"]
    assert "console=ttyS0" in new["kernel-arguments"]
    assert "console=ttyS0" not in old["kernel-arguments"]


def test_rollback_makes_the_previous_deployment_the_default(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    assert _checksums(sysroot.path) == [v2, v1]
    daemon.client().transact(Request("Rollback"), Recorder())
    assert _checksums(sysroot.path) == [v1, v2]


def test_deploy_rebase_and_cleanup_are_transactions_too(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    client = daemon.client()
    v2 = sysroot.repo.commits["2"]
    result = client.transact(Request("Deploy", ["version=2"]), Recorder())
    assert result["new"]["checksum"] == v2 and _checksums(sysroot.path)[0] == v2
    result = client.transact(
        Request("Rebase", ["origin:test/x86_64/base", sysroot.repo.commits["3"]]), Recorder()
    )
    assert result["to"] == "origin:test/x86_64/base"
    assert _checksums(sysroot.path)[0] == sysroot.repo.commits["3"]
    result = client.transact(Request("Cleanup", [["rollback"]]), Recorder())
    assert [d["role"] for d in result["removed"]] == ["rollback"]
    assert _checksums(sysroot.path) == [sysroot.repo.commits["3"]]


def test_a_failing_request_finishes_with_the_error_and_deploys_nothing(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    with pytest.raises(TransactionError) as e:
        daemon.client().transact(Request("KernelArgs", [[], ["nosuchkarg"]]), Recorder())
    assert str(e.value) == 'no karg "nosuchkarg" to delete'
    assert len(deployments_json(sysroot.path)) == 1
    assert "Traceback" not in daemon.log.read_text()


def test_bad_arguments_are_refused_before_any_transaction(daemon: Daemon) -> None:
    client = daemon.client()
    with pytest.raises(DaemonError) as e:
        client.transact(Request("Cleanup", [["everything"]]), Recorder())
    assert e.value.name == INVALID_ARGUMENT
    assert 'unknown item "everything"' in str(e.value)
    with pytest.raises(DaemonError) as e:
        client.transact(Request("KernelArgs", [["ostree=/boot.1"], []]), Recorder())
    assert e.value.name == INVALID_ARGUMENT
    for options in ({"reboot": GLib.Variant("b", True)}, {"check": GLib.Variant("s", "yes")}):
        with pytest.raises(DaemonError) as e:
            client._call(
                "/org/aptostree/dev/OS/debian", "org.aptostree.dev.OS", "Upgrade",
                GLib.Variant("(a{sv})", (options,)), "(o)",
            )  # fmt: skip
        assert e.value.name == INVALID_ARGUMENT
    # A path is never opened by the daemon for a caller: files come as descriptors.
    with pytest.raises(DaemonError) as e:
        client.transact(Request("PkgChange", [["/etc/shadow"], []]), Recorder())
    assert e.value.name == INVALID_ARGUMENT and "file descriptors" in str(e.value)
    assert client.sysroot_property("ActiveTransaction") == "/"


def test_a_second_transaction_is_busy_and_names_the_active_one(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    client = daemon.client()
    # Created, not started: the transaction is active until it finishes.
    first = client.create_transaction(UPGRADE)
    assert client.sysroot_property("ActiveTransaction") == first
    with pytest.raises(DaemonError) as e:
        daemon.client().create_transaction(UPGRADE)
    assert e.value.name == BUSY
    assert str(e.value) == f"Busy: upgrade by pid {os.getpid()}"
    # Reading is never busy, and status names the holder.
    status = daemon.client().status()
    assert len(status["deployments"]) == 1
    assert status["transaction"]["command"] == "upgrade"
    assert status["transaction"]["caller"]["pid"] == os.getpid()
    proc = daemon.cli("status")
    assert proc.stdout.splitlines()[:2] == [
        "State: busy",
        f"Transaction: upgrade by pid {os.getpid()}",
    ]
    client.run_transaction(first)
    assert _checksums(sysroot.path)[0] == sysroot.repo.commits["3"]
    assert client.sysroot_property("ActiveTransaction") == "/"
    assert client.status()["transaction"] is None


def test_a_transaction_fails_with_the_lock_holders_message_while_the_cli_holds_the_lock(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    with Sysroot(sysroot.path).locked("apt-ostree upgrade"), pytest.raises(TransactionError) as e:
        daemon.client().transact(UPGRADE, Recorder())
    assert str(e.value) == (
        f'another operation is in progress (pid {os.getpid()}, "apt-ostree upgrade")'
    )
    assert len(deployments_json(sysroot.path)) == 1
    # The lock is free again: the next transaction runs.
    daemon.client().transact(UPGRADE, Recorder())
    assert len(deployments_json(sysroot.path)) == 2


def test_a_cancelled_transaction_that_never_started_frees_the_daemon(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    client = daemon.client()
    first = client.create_transaction(Request("Rollback"))
    client.cancel_transaction(first)
    assert client.sysroot_property("ActiveTransaction") == "/"
    client.transact(Request("KernelArgs", [["quiet2"], []]), Recorder())
    assert len(deployments_json(sysroot.path)) == 2


CREATE_AND_LEAVE = """
import sys
from apt_ostree.client.dbus import DaemonClient
from apt_ostree.requests import Request
print(DaemonClient(sys.argv[1]).create_transaction(Request("Upgrade")))
"""


def test_a_transaction_whose_caller_left_before_start_is_dropped(
    daemon: Daemon, sysroot: SysrootFixture
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CREATE_AND_LEAVE, daemon.address],
        capture_output=True, text=True, env=python_env(), check=True,
    )  # fmt: skip
    assert proc.stdout.startswith("/org/aptostree/dev/Transaction/")
    client = daemon.client()
    deadline = time.monotonic() + 10
    while client.sysroot_property("ActiveTransaction") != "/":
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.05)
    assert "its caller left before Start(); dropped" in daemon.log.read_text()
    assert len(deployments_json(sysroot.path)) == 1


def test_progress_goes_to_the_caller_alone(daemon: Daemon, sysroot: SysrootFixture) -> None:
    # Another client listens to everything the daemon sends (as a match rule on the
    # bus would let it); the transaction's signals are addressed to its caller.
    other = DaemonClient(daemon.address)
    heard: list[str] = []
    context = GLib.MainContext.new()
    context.push_thread_default()
    try:
        other.connection.signal_subscribe(
            None, "org.aptostree.dev.Transaction", None, None, None,
            Gio.DBusSignalFlags.NONE, lambda *a: heard.append(a[4]),
        )  # fmt: skip
        recorder = Recorder()
        daemon.client().transact(UPGRADE, recorder)
        for _ in range(20):
            context.iteration(False)
    finally:
        context.pop_thread_default()
    assert any(kind == "TaskBegin" for kind, _ in recorder.events)
    assert heard == []


def test_the_daemon_exits_by_itself_when_idle(
    bus: str, sysroot: SysrootFixture, tmp_path: Path
) -> None:
    d = start_daemon(bus, sysroot.path, tmp_path / "apt-ostreed.log", idle_exit=1)
    assert d.client().status()["deployments"]
    assert d.proc.wait(timeout=15) == 0, d.log.read_text()
    assert not has_owner(DaemonClient(bus))
    assert "idle for 1s; exiting" in d.log.read_text()
