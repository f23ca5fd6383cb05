"""`apt-ostreed`: connect to the bus, publish the objects, serve until idle."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apt_ostree import __version__
from apt_ostree.daemon.bus import BUS_NAME
from apt_ostree.daemon.config import CONFIG_PATH
from apt_ostree.daemon.service import Daemon
from apt_ostree.daemon.transaction import log
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apt-ostreed",
        description=f"The apt-ostree D-Bus daemon ({BUS_NAME}); see docs/dbus.md.",
    )
    parser.add_argument("--version", action="version", version=f"apt-ostreed {__version__}")
    parser.add_argument(
        "--sysroot", type=Path, default=Path("/"), metavar="PATH",
        help="serve the OSTree sysroot at PATH (default: the booted system)",
    )  # fmt: skip
    parser.add_argument(
        "--bus", default="system", metavar="system|session|ADDRESS",
        help="the bus to serve on: system (default), session, or a D-Bus address",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, default=CONFIG_PATH, metavar="FILE",
        help=f"the configuration file (default {CONFIG_PATH})",
    )  # fmt: skip
    parser.add_argument(
        "--idle-exit", type=int, default=60, metavar="SECONDS",
        help="exit after SECONDS without calls or transactions (default 60; 0: never)",
    )  # fmt: skip
    return parser


def connect(bus: str) -> Gio.DBusConnection:
    try:
        if bus in ("system", "session"):
            kind = Gio.BusType.SYSTEM if bus == "system" else Gio.BusType.SESSION
            connection = Gio.bus_get_sync(kind, None)
        else:
            flags = (
                Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
            )
            connection = Gio.DBusConnection.new_for_address_sync(bus, flags, None, None)
    except GLib.Error as e:
        raise AptOstreeError(f"cannot connect to the {bus} bus: {e.message}") from e
    # The daemon decides when to exit (below), not GDBus with a SIGTERM to itself.
    connection.set_exit_on_close(False)
    return connection


def serve(args: argparse.Namespace) -> None:
    from apt_ostree.system.sysroot import Sysroot

    if args.idle_exit < 0:
        raise AptOstreeError("--idle-exit must be 0 (never) or a number of seconds")
    # Fail at start, not at the first call, when the sysroot is not one.
    sysroot = Sysroot(args.sysroot)
    recover_leftovers(args.sysroot)
    osnames = sorted({d.osname for d in sysroot.deployments()})
    default_osname = sysroot.default_osname() if osnames else ""
    connection = connect(args.bus)
    loop = GLib.MainLoop()
    daemon = Daemon(
        connection, args.sysroot, booted=sysroot.booted, idle_exit=args.idle_exit, loop=loop,
        config_path=args.config,
    )  # fmt: skip
    del sysroot
    daemon.publish(osnames, default_osname)
    daemon.own_name()

    def on_closed(*_args: Any) -> None:
        log("the bus connection was closed; exiting")
        loop.quit()

    connection.connect("closed", on_closed)
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, daemon.terminate)
    log(f"serving {args.sysroot} as {BUS_NAME} on the {args.bus} bus")
    loop.run()


def recover_leftovers(sysroot: Path) -> None:
    """A daemon killed mid-transaction left scratch space (and maybe a mounted overlay):
    this one starts clean."""
    from apt_ostree.system.recovery import recover

    try:
        result = recover(sysroot)
    except AptOstreeError as e:
        log(f"cannot clean up after an interrupted transaction: {e}")
        return
    if result.skipped:
        log(f"not cleaning up after interrupted transactions: {result.skipped}")
    for point in result.unmounted:
        log(f"unmounted {point}, left by an interrupted transaction")
    for path in result.removed:
        log(f"removed {path}, left by an interrupted transaction")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        serve(args)
    except AptOstreeError as e:
        print(f"apt-ostreed: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
