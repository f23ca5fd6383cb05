"""A daemon that comes up after the bus has given up activating it is still reached.

dbus-daemon fails an activation after `service_start_timeout` (25 s on the system
bus) while systemd goes on starting apt-ostreed.service: under load (an emulated
machine's first boot) the first `apt-ostree status` timed out although the daemon
came up seconds later. The client asks again. Here a private bus with a 1 s
timeout activates a daemon whose first start takes 3 s (the bus kills that one, as
it does with a slow service it spawned itself); the next start is quick.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.client import BUS_ADDRESS_ENV
from apt_ostree.daemon.bus import BUS_NAME
from tests.fixtures.daemon import private_bus, python_env
from tests.fixtures.sysroot import TOP, SysrootFixture

SLOW_FIRST_START = """#!/bin/sh
# The first start is slow; the ones after it are not.
if [ ! -e {marker} ]; then touch {marker}; sleep {delay}; fi
exec env PYTHONPATH={src} {python} -m apt_ostree.daemon --bus "$DBUS_STARTER_ADDRESS" \\
    --sysroot {sysroot} --idle-exit 0 2>>{log}
"""


@pytest.fixture
def activating_bus(sysroot: SysrootFixture, tmp_path: Path) -> Iterator[str]:
    with _activating_bus(sysroot, tmp_path, delay=3, bus_timeout_ms=1000) as address:
        yield address


@contextlib.contextmanager
def _activating_bus(
    sysroot: SysrootFixture, tmp_path: Path, *, delay: int, bus_timeout_ms: int
) -> Iterator[str]:
    services = tmp_path / "services"
    services.mkdir()
    script = tmp_path / "start-apt-ostreed"
    script.write_text(SLOW_FIRST_START.format(
        marker=tmp_path / "started-once", delay=delay, src=TOP / "src", python=sys.executable,
        sysroot=sysroot.path, log=tmp_path / "apt-ostreed.log",
    ))  # fmt: skip
    script.chmod(0o755)
    (services / f"{BUS_NAME}.service").write_text(
        f"[D-BUS Service]\nName={BUS_NAME}\nExec={script}\n"
    )
    extra = (
        f"  <servicedir>{services}</servicedir>\n"
        f'  <limit name="service_start_timeout">{bus_timeout_ms}</limit>\n'
    )
    with private_bus(extra) as (address, _):
        yield address


@pytest.mark.parametrize("args", [("status", "--json"), ("kargs",)])
def test_the_cli_asks_again_when_the_activation_timed_out(
    activating_bus: str, args: tuple[str, ...]
) -> None:
    """`status` (the wire protocol) and `kargs` (GDBus) both retry."""
    proc = subprocess.run(
        [sys.executable, "-m", "apt_ostree", *args], capture_output=True, text=True,
        env=python_env(**{BUS_ADDRESS_ENV: activating_bus}), check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_a_call_waits_for_a_daemon_that_starts_slower_than_gdbus_default_timeout(
    sysroot: SysrootFixture, tmp_path: Path
) -> None:
    """The bus waits 60 s for the start, which takes 27 s: longer than GDBus's default
    call timeout (25 s), which the client does not use (a timed-out call cannot be
    asked again: the daemon may have acted on it)."""
    with _activating_bus(sysroot, tmp_path, delay=27, bus_timeout_ms=60_000) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "apt_ostree", "kargs"], capture_output=True, text=True,
            env=python_env(**{BUS_ADDRESS_ENV: address}), check=False, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "root=LABEL=root" in proc.stdout
