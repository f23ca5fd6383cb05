"""The CLI through apt-ostreed prints what the in-process CLI prints.

Two identical sysroots: one changed by `apt-ostree --sysroot PATH ...` in-process,
the other by `apt-ostree ...` through a daemon on a private bus (as on a booted
system, where the CLI goes through the system bus). The same commands, in the
same order, give the same stdout, the same error line and the same exit code.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.client import BUS_ADDRESS_ENV
from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.reporter import NullReporter
from tests.fixtures.daemon import NOBODY, Daemon, python_env
from tests.fixtures.sysroot import REF, SysrootFixture, apt_ostree


@dataclass
class Twins:
    local: Path
    daemon: Daemon

    def both(self, *args: str) -> tuple[subprocess.CompletedProcess[str], ...]:
        return apt_ostree(self.local, *args), self.daemon.cli(*args)


@pytest.fixture
def twins(sysroot: SysrootFixture, daemon: Daemon, tmpfs: Path) -> Twins:
    """A second sysroot made as the `sysroot` fixture is (served by `daemon`)."""
    local = tmpfs / "sysroot-in-process"
    make_sysroot(
        SysrootRequest(
            path=local, repo=sysroot.repo.path, ref=REF, kargs=["root=LABEL=root", "quiet"],
            remote="origin", remote_url=sysroot.repo.url, gpg_verify=False,
            revision=sysroot.repo.commits["1"],
        ),
        NullReporter(),
    )  # fmt: skip
    return Twins(local, daemon)


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


SEQUENCE = [
    ("status",),
    ("status", "--json"),
    ("status", "-v"),
    ("kargs",),
    ("db", "list"),
    ("db", "version"),
    ("upgrade", "--check"),
    ("upgrade", "--preview"),
    ("status", "-J", "$.deployments[*].pending-base-version"),
    ("deploy", "--preview", "version=2"),
    ("upgrade", "--download-only"),
    ("upgrade", "-C"),
    ("deploy", "--disallow-downgrade", "version=2"),
    ("deploy", "version=2"),
    ("deploy", "version=2", "--unchanged-exit-77"),
    ("db", "diff"),
    ("db", "diff", "--format=json"),
    ("upgrade",),
    ("upgrade", "--unchanged-exit-77"),
    ("status", "--pending-exit-77"),
    ("rollback",),
    ("kargs", "--append=console=ttyS0"),
    ("kargs", "--append-if-missing=console=ttyS0", "--unchanged-exit-77"),
    ("kargs", "--delete=nosuchkarg"),
    ("kargs", "--deploy-index=9"),
    ("deploy", "nothex!"),
    ("rebase", "--branch=test/x86_64/nosuchref"),
    ("cleanup", "-r"),
    ("cleanup", "-p", "-b"),
    ("uninstall", "nosuchpkg"),
    ("override", "replace", "Bad_Name"),
    ("initramfs",),
    ("initramfs", "--disable"),
    ("initramfs", "--enable", "--arg=--add-drivers", "--arg=loop"),
    ("initramfs",),
    ("initramfs", "--disable"),
    ("initramfs-etc", "--track=/etc/os-release"),
    ("initramfs-etc", "--track=/etc/os-release", "--unchanged-exit-77"),
    ("initramfs-etc",),
    ("initramfs-etc", "--track=/usr/lib/os-release"),
    ("initramfs-etc", "--untrack-all"),
    ("kargs", "--append=quiet2", "--lock-finalization"),
    ("finalize-deployment",),
    ("finalize-deployment", "--allow-missing-checksum"),
    ("status",),
    ("status", "--json"),
    ("rebase", "--custom-origin-url=https://images.example.org", "--custom-origin-description=Ex",
     f"origin:{REF}", "version=1"),
    ("status", "--json"),
    ("reset",),
    ("ex", "history"),
    ("ex", "history", "--json", "--all"),
]  # fmt: skip


def test_every_command_prints_the_same_through_the_daemon(twins: Twins) -> None:
    for args in SEQUENCE:
        local, bus = twins.both(*args)
        shown = " ".join(args)
        assert bus.returncode == local.returncode, (shown, local.stderr, bus.stderr)
        assert bus.stdout == local.stdout, shown
        assert _error_lines(bus) == _error_lines(local), shown
        assert "Traceback" not in bus.stderr + local.stderr, shown


def test_staging_finalizing_and_applying_live_need_a_booted_system(twins: Twins) -> None:
    """Staging and the running system exist only on the booted system
    (tests/e2e/test_boot.py shows them there); on an offline sysroot each is refused
    in one line and changes nothing."""
    before = twins.daemon.cli("status", "--json").stdout
    for args, error in (
        (("upgrade", "--lock-finalization"), "error: --lock-finalization needs the booted system"),
        (("install", "pkg-a", "--lock-finalization"), "error: --lock-finalization needs"),
        (("initramfs", "--enable", "--lock-finalization"), "error: --lock-finalization needs"),
        (("initramfs-etc", "--force-sync", "--lock-finalization"), "error: --lock-finalization"),
        (("finalize-deployment", "abc"), "error: No staged deployment"),
        (("finalize-deployment",), "error: finalize-deployment needs the staged deployment's"),
        (("apply-live",), "error: apply-live needs the booted system"),
        (("apply-live", "--reset", "--target=abcd"), "error: --reset and --target cannot be"),
        (("install", "-A", "pkg-a"), "error: --apply-live needs the booted system"),
        (("install", "-A", "--dry-run", "pkg-a"), "error: --apply-live cannot be used with"),
    ):
        for proc in twins.both(*args):
            assert proc.returncode == 1, (args, proc.stderr)
            (line,) = _error_lines(proc)
            assert line.startswith(error), (args, line)
    assert twins.daemon.cli("status", "--json").stdout == before


def test_progress_is_printed_on_stderr_as_in_process(twins: Twins) -> None:
    local, bus = twins.both("upgrade")
    assert local.returncode == bus.returncode == 0, bus.stderr
    assert "Pulling origin:test/x86_64/base..." in local.stderr
    assert "Pulling origin:test/x86_64/base..." in bus.stderr
    assert "Pulling origin:test/x86_64/base: done in" in bus.stderr


def test_a_user_may_read_status_and_packages_but_not_change(twins: Twins) -> None:
    status = twins.daemon.cli("status", "--json", user=NOBODY)
    assert status.returncode == 0, status.stderr
    assert status.stdout == twins.daemon.cli("status", "--json").stdout
    listed = twins.daemon.cli("db", "list", "pkg-*", user=NOBODY)
    assert listed.returncode == 0 and " pkg-a_1.0_amd64" in listed.stdout.splitlines()
    before = twins.daemon.cli("status", "--json").stdout
    refused = twins.daemon.cli("upgrade", user=NOBODY)
    assert refused.returncode == 1
    assert _error_lines(refused) == [
        "error: not authorized: org.aptostree.dev.upgrade (uid 65534; cannot ask polkit:"
        " The name org.freedesktop.PolicyKit1 was not provided by any .service files)"
    ]
    assert twins.daemon.cli("status", "--json").stdout == before


def test_cancel_and_reload_without_a_daemon_are_one_line_errors(twins: Twins) -> None:
    for command in ("cancel", "reload"):
        proc = apt_ostree(twins.local, command)
        assert proc.returncode == 1
        assert len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith(f"error: {command} needs apt-ostreed")


def test_cancel_without_an_active_transaction_says_so(twins: Twins) -> None:
    proc = twins.daemon.cli("cancel")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "No active transaction.\n"
    assert twins.daemon.cli("reload").returncode == 0


def test_without_a_daemon_on_the_bus_the_cli_says_so_in_one_line(bus: str) -> None:
    for args in (("status",), ("kargs", "--append=x")):
        proc = subprocess.run(
            [sys.executable, "-m", "apt_ostree", *args], capture_output=True, text=True,
            env=python_env(**{BUS_ADDRESS_ENV: bus}), check=False,
        )  # fmt: skip
        assert proc.returncode == 1, args
        assert proc.stderr == (
            "error: cannot reach apt-ostreed: The name org.aptostree.dev was not provided"
            " by any .service files\n"
        ), args
