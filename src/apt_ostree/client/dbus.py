"""The D-Bus path: drive apt-ostreed (docs/dbus.md) and render its progress.

Each change is a transaction: the OS method returns its object path, the client
subscribes to its signals, then calls Start() so that no signal is lost, and
waits for Finished. The CLI does not use this yet (v0): it still runs in-process.
"""

from __future__ import annotations

import json
import re
from typing import Any

from apt_ostree.daemon.bus import (
    BUS_NAME,
    OS_INTERFACE,
    PROPERTIES_INTERFACE,
    SYSROOT_INTERFACE,
    SYSROOT_PATH,
    TRANSACTION_INTERFACE,
    os_object_path,
)
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib
from apt_ostree.reporter import NullReporter, Reporter

_REMOTE_ERROR = re.compile(r"GDBus\.Error:([^\s:]+): (.*)", re.DOTALL)
DBUS_NAME = "org.freedesktop.DBus"


class DaemonError(AptOstreeError):
    """A call to apt-ostreed failed; `name` is the D-Bus error name (e.g.
    org.aptostree.dev.Error.Busy), empty when the bus itself failed."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class TransactionError(AptOstreeError):
    """A transaction finished with success=false; the message is the daemon's."""


def _daemon_error(e: GLib.Error) -> DaemonError:
    match = _REMOTE_ERROR.match(e.message or "")
    if match:
        return DaemonError(match.group(2), match.group(1))
    return DaemonError(f"cannot reach apt-ostreed: {e.message}")


def connect(bus: str = "system") -> Gio.DBusConnection:
    """`system`, `session`, or a D-Bus address (a private bus, as in the tests)."""
    try:
        if bus in ("system", "session"):
            kind = Gio.BusType.SYSTEM if bus == "system" else Gio.BusType.SESSION
            return Gio.bus_get_sync(kind, None)
        flags = (
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
            | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        )
        return Gio.DBusConnection.new_for_address_sync(bus, flags, None, None)
    except GLib.Error as e:
        raise DaemonError(f"cannot connect to the {bus} bus: {e.message}") from e


class DaemonClient:
    def __init__(self, bus: str = "system", *, timeout_ms: int = -1) -> None:
        self.connection = connect(bus)
        self.timeout_ms = timeout_ms

    def _call(
        self, path: str, interface: str, method: str, args: GLib.Variant | None, reply: str | None
    ) -> Any:
        try:
            result = self.connection.call_sync(
                BUS_NAME, path, interface, method, args,
                GLib.VariantType(reply) if reply else None,
                Gio.DBusCallFlags.NONE, self.timeout_ms, None,
            )  # fmt: skip
        except GLib.Error as e:
            raise _daemon_error(e) from e
        return result.unpack() if result is not None else ()

    # -- reading --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What `apt-ostree status --json` prints, parsed."""
        (text,) = self._call(SYSROOT_PATH, SYSROOT_INTERFACE, "GetStatus", None, "(s)")
        status: dict[str, Any] = json.loads(text)
        return status

    def sysroot_property(self, name: str) -> Any:
        args = GLib.Variant("(ss)", (SYSROOT_INTERFACE, name))
        (value,) = self._call(SYSROOT_PATH, PROPERTIES_INTERFACE, "Get", args, "(v)")
        return value

    def default_osname(self) -> str:
        """The booted deployment's OS, else the default deployment's."""
        deployments = self.status()["deployments"]
        for d in deployments:
            if d["booted"]:
                return str(d["osname"])
        if not deployments:
            raise AptOstreeError("the sysroot has no deployments")
        return str(deployments[0]["osname"])

    # -- transactions ---------------------------------------------------------------

    def create_transaction(self, osname: str | None, method: str, args: GLib.Variant) -> str:
        """Call an OS method; the transaction it returns has not started."""
        path = os_object_path(osname or self.default_osname())
        (transaction,) = self._call(path, OS_INTERFACE, method, args, "(o)")
        return str(transaction)

    def run_transaction(self, path: str, reporter: Reporter | None = None) -> None:
        """Start the transaction at `path`, render its signals, return when it finished;
        TransactionError with the daemon's message when it failed."""
        run = _Run(self, path, reporter or NullReporter())
        run.wait()

    def cancel(self, path: str) -> None:
        self._call(path, TRANSACTION_INTERFACE, "Cancel", None, None)

    def upgrade(
        self, osname: str | None = None, *, allow_downgrade: bool = False,
        reporter: Reporter | None = None,
    ) -> None:  # fmt: skip
        options = {"allow-downgrade": GLib.Variant("b", allow_downgrade)}
        path = self.create_transaction(osname, "Upgrade", GLib.Variant("(a{sv})", (options,)))
        self.run_transaction(path, reporter)

    def rollback(self, osname: str | None = None, *, reporter: Reporter | None = None) -> None:
        path = self.create_transaction(osname, "Rollback", GLib.Variant("(a{sv})", ({},)))
        self.run_transaction(path, reporter)

    def kernel_args(
        self, osname: str | None = None, *, append: list[str] | None = None,
        delete: list[str] | None = None, reporter: Reporter | None = None,
    ) -> None:  # fmt: skip
        args = GLib.Variant("(asasa{sv})", (append or [], delete or [], {}))
        self.run_transaction(self.create_transaction(osname, "KernelArgs", args), reporter)

    def pkg_change(
        self, osname: str | None = None, *, install: list[str] | None = None,
        uninstall: list[str] | None = None, reporter: Reporter | None = None,
    ) -> None:  # fmt: skip
        args = GLib.Variant("(asasa{sv})", (install or [], uninstall or [], {}))
        self.run_transaction(self.create_transaction(osname, "PkgChange", args), reporter)

    def cleanup(
        self, what: list[str], osname: str | None = None, *, reporter: Reporter | None = None
    ) -> None:
        args = GLib.Variant("(as)", (what,))
        self.run_transaction(self.create_transaction(osname, "Cleanup", args), reporter)


class _Run:
    """One transaction followed to its end on a private main context."""

    def __init__(self, client: DaemonClient, path: str, reporter: Reporter) -> None:
        self.client = client
        self.path = path
        self.reporter = reporter
        self.result: tuple[bool, str] | None = None
        self._tasks: list[str] = []

    def wait(self) -> None:
        connection = self.client.connection
        context = GLib.MainContext.new()
        # Signal callbacks run in the context that is thread-default at subscription.
        context.push_thread_default()
        subscriptions = []
        try:
            subscriptions.append(connection.signal_subscribe(
                BUS_NAME, TRANSACTION_INTERFACE, None, self.path, None,
                Gio.DBusSignalFlags.NONE, self._on_signal,
            ))  # fmt: skip
            subscriptions.append(connection.signal_subscribe(
                DBUS_NAME, DBUS_NAME, "NameOwnerChanged", "/org/freedesktop/DBus", BUS_NAME,
                Gio.DBusSignalFlags.NONE, self._on_owner_changed,
            ))  # fmt: skip
            # Subscribing sends AddMatch before Start on the same connection: the
            # bus has the match rules when the first signal comes.
            self.client._call(self.path, TRANSACTION_INTERFACE, "Start", None, None)
            while self.result is None:
                context.iteration(True)
        finally:
            for sub in subscriptions:
                connection.signal_unsubscribe(sub)
            context.pop_thread_default()
        self.reporter.progress_done()
        success, error = self.result
        if not success:
            raise TransactionError(error)

    def _on_signal(
        self, _conn: Any, _sender: str, _path: str, _iface: str, name: str, params: GLib.Variant
    ) -> None:
        args = params.unpack()
        if name == "Message":
            self.reporter.message(args[0])
        elif name == "TaskBegin":
            self._tasks.append(args[0])
            self.reporter.task_begin(args[0])
        elif name == "TaskEnd":
            task = self._tasks.pop() if self._tasks else ""
            detail = args[0][len(task) + 2 :] if args[0].startswith(task + ": ") else ""
            self.reporter.task_end(detail)
        elif name == "PercentProgress":
            self.reporter.progress(args[0])
        elif name == "Finished":
            self.result = (bool(args[0]), str(args[1]))

    def _on_owner_changed(self, *signal: Any) -> None:
        _name, _old, new = signal[5].unpack()
        if not new and self.result is None:
            self.result = (False, "apt-ostreed exited before the transaction finished")
