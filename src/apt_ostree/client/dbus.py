"""The D-Bus path: drive apt-ostreed (docs/dbus.md) and render its progress.

Each change is a transaction: the OS method returns its object path, the client
subscribes to its signals (which the daemon sends to this client alone), calls
Start(), forwards the progress to a Reporter and returns the `Result` document
when `Finished` comes. Ctrl-C cancels the transaction and waits for it to end.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.client import Client
from apt_ostree.daemon.bus import (
    BUS_NAME,
    NO_TRANSACTION,
    OS_INTERFACE,
    PROPERTIES_INTERFACE,
    SYSROOT_INTERFACE,
    SYSROOT_PATH,
    TRANSACTION_INTERFACE,
    os_object_path,
)
from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.reporter import NullReporter, Reporter
from apt_ostree.requests import METHODS, Request

if TYPE_CHECKING:
    from apt_ostree.ostree import Gio, GLib

_REMOTE_ERROR = re.compile(r"GDBus\.Error:([^\s:]+): (.*)", re.DOTALL)
DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
# How long `cancel` waits for the transaction to end.
CANCEL_WAIT_S = 600


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
        return _named_error(match.group(1), match.group(2))
    return DaemonError(f"cannot reach apt-ostreed: {e.message}")


# dbus-daemon gives up on an activation after 25 s (service_start_timeout) while
# systemd goes on starting apt-ostreed.service: on a slow machine (an emulated one
# under load) the first call after boot can time out although the daemon comes
# up. Asking again waits for the same start job; after this many tries, give up.
ACTIVATION_ATTEMPTS = 4
# How long a call waits for its reply. GDBus's default (25 s) is shorter than a
# D-Bus activation of apt-ostreed on a slow machine (the call waits in dbus-daemon
# until the daemon has started) and than a person answering polkit's password
# prompt; a timed-out call cannot be retried (the daemon may have made its
# transaction), so wait long enough instead.
CALL_TIMEOUT_MS = 10 * 60 * 1000


def _activation_timed_out(name: str, message: str) -> bool:
    return name == "org.freedesktop.DBus.Error.TimedOut" and message.startswith(
        "Failed to activate service"
    )


def _named_error(name: str, message: str) -> DaemonError:
    if name.startswith("org.freedesktop.DBus.Error.") and name.endswith(
        ("ServiceUnknown", "NameHasNoOwner", "Spawn.ChildExited", "NoReply", "Disconnected")
    ):
        return DaemonError(f"cannot reach apt-ostreed: {message}", name)
    return DaemonError(message, name)


def connect(bus: str = "system") -> Gio.DBusConnection:
    """`system`, `session`, or a D-Bus address (a private bus, as in the tests)."""
    from apt_ostree.ostree import Gio, GLib

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


def request_arguments(request: Request) -> tuple[GLib.Variant, Gio.UnixFDList]:
    """The method's arguments; the files of `ah` options go in the fd list."""
    from apt_ostree.ostree import Gio, GLib

    spec = METHODS[request.method]
    fds = Gio.UnixFDList.new()
    options: dict[str, GLib.Variant] = {}
    for key, value in request.options.items():
        kind = spec.options[key]
        if kind == "ah":
            value = [fds.append(p.fd) for p in value]
        options[key] = GLib.Variant(kind, value)
    return GLib.Variant(spec.signature, (*request.args, options)), fds


class DaemonClient(Client):
    """apt-ostreed on `bus`. GLib is imported, and the connection made, on the first call
    that needs them: `status` speaks the wire protocol itself (client/wire.py)."""

    def __init__(self, bus: str = "system", *, timeout_ms: int = CALL_TIMEOUT_MS) -> None:
        self.bus = bus
        self.timeout_ms = timeout_ms
        self._connection: Gio.DBusConnection | None = None
        self._path: Path | None = None

    @property
    def connection(self) -> Gio.DBusConnection:
        if self._connection is None:
            self._connection = connect(self.bus)
        return self._connection

    def _call(
        self,
        path: str,
        interface: str,
        method: str,
        args: GLib.Variant | None,
        reply: str | None,
        fds: Gio.UnixFDList | None = None,
    ) -> Any:
        from apt_ostree.ostree import GLib

        for attempt in range(1, ACTIVATION_ATTEMPTS + 1):
            try:
                return self._call_once(path, interface, method, args, reply, fds)
            except GLib.Error as e:
                error = _daemon_error(e)
                if attempt == ACTIVATION_ATTEMPTS or not _activation_timed_out(
                    error.name, str(error)
                ):
                    raise error from e
        raise AssertionError("unreachable")

    def _call_once(
        self,
        path: str,
        interface: str,
        method: str,
        args: GLib.Variant | None,
        reply: str | None,
        fds: Gio.UnixFDList | None,
    ) -> Any:
        from apt_ostree.ostree import Gio, GLib

        reply_type = GLib.VariantType(reply) if reply else None
        flags = Gio.DBusCallFlags.NONE
        if fds is not None and fds.get_length():
            result, _ = self.connection.call_with_unix_fd_list_sync(
                BUS_NAME, path, interface, method, args, reply_type, flags, self.timeout_ms,
                fds, None,
            )  # fmt: skip
        else:
            result = self.connection.call_sync(
                BUS_NAME, path, interface, method, args, reply_type, flags, self.timeout_ms, None
            )
        return result.unpack() if result is not None else ()

    def _json(self, path: str, interface: str, method: str, args: GLib.Variant | None) -> Any:
        (text,) = self._call(path, interface, method, args, "(s)")
        return json.loads(text)

    def sysroot_property(self, name: str) -> Any:
        from apt_ostree.ostree import GLib

        args = GLib.Variant("(ss)", (SYSROOT_INTERFACE, name))
        (value,) = self._call(SYSROOT_PATH, PROPERTIES_INTERFACE, "Get", args, "(v)")
        return value

    def _os_path(self, osname: str | None) -> str:
        if osname:
            return os_object_path(osname)
        path = str(self.sysroot_property("DefaultOS"))
        if path == NO_TRANSACTION:
            raise AptOstreeError(f"the sysroot at {self.path} has no deployments")
        return path

    # -- reading --------------------------------------------------------------------

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(self.sysroot_property("Path"))
        return self._path

    @property
    def booted(self) -> bool:
        return bool(self.sysroot_property("Booted"))

    def status(self) -> dict[str, Any]:
        """What `apt-ostree status --json` prints, parsed."""
        from apt_ostree.client import wire

        attempt = 0
        while self._connection is None:
            attempt += 1
            try:
                text = wire.call_string(
                    wire.bus_address(self.bus), BUS_NAME, SYSROOT_PATH, SYSROOT_INTERFACE,
                    "GetStatus",
                )  # fmt: skip
            except wire.WireError as e:
                if attempt < ACTIVATION_ATTEMPTS and _activation_timed_out(e.name, str(e)):
                    continue
                raise _named_error(e.name, str(e)) from None
            except OSError as e:
                raise DaemonError(f"cannot connect to the {self.bus} bus: {e}") from None
            except wire.Unsupported:
                break
            else:
                status: dict[str, Any] = json.loads(text)
                return status
        status = self._json(SYSROOT_PATH, SYSROOT_INTERFACE, "GetStatus", None)
        return status

    def kernel_args(
        self, osname: str | None, *, index: int | None, import_proc_cmdline: bool
    ) -> str:
        from apt_ostree.ostree import GLib

        options = {"import-proc-cmdline": GLib.Variant("b", import_proc_cmdline)}
        if index is not None:
            options["deploy-index"] = GLib.Variant("i", index)
        (text,) = self._call(
            self._os_path(osname), OS_INTERFACE, "GetKernelArgs",
            GLib.Variant("(a{sv})", (options,)), "(s)",
        )  # fmt: skip
        return str(text)

    def search(self, osname: str | None, terms: list[str], reporter: Reporter) -> list[Any]:
        from apt_ostree.ostree import GLib

        found: list[Any] = self._json(
            self._os_path(osname), OS_INTERFACE, "Search", GLib.Variant("(as)", (terms,))
        )
        return found

    def db_list(self, args: list[str], repo: Path | None) -> list[dict[str, Any]]:
        from apt_ostree.ostree import GLib

        if repo is not None:
            # A repository the caller names is read as the caller, in-process.
            from apt_ostree.client.local import LocalClient

            return LocalClient(self.path).db_list(args, repo)
        found: list[dict[str, Any]] = self._json(
            SYSROOT_PATH, SYSROOT_INTERFACE, "DbList", GLib.Variant("(as)", (args,))
        )
        return found

    def db_diff(
        self,
        from_rev: str | None,
        to_rev: str | None,
        *,
        base: bool,
        repo: Path | None,
        changelogs: bool = False,
    ) -> dict[str, Any]:
        from apt_ostree.ostree import GLib

        if repo is not None:
            from apt_ostree.client.local import LocalClient

            return LocalClient(self.path).db_diff(
                from_rev, to_rev, base=base, repo=repo, changelogs=changelogs
            )
        options = {"base": GLib.Variant("b", base)}
        if changelogs:  # only when asked: an older daemon refuses unknown options
            options["changelogs"] = GLib.Variant("b", True)
        args = GLib.Variant("(ssa{sv})", (from_rev or "", to_rev or "", options))
        diff: dict[str, Any] = self._json(SYSROOT_PATH, SYSROOT_INTERFACE, "DbDiff", args)
        return diff

    def db_version(self, revs: list[str], repo: Path | None) -> list[dict[str, Any]]:
        from apt_ostree.ostree import GLib

        if repo is not None:
            from apt_ostree.client.local import LocalClient

            return LocalClient(self.path).db_version(revs, repo)
        found: list[dict[str, Any]] = self._json(
            SYSROOT_PATH, SYSROOT_INTERFACE, "DbVersion", GLib.Variant("(as)", (revs,))
        )
        return found

    # -- transactions ---------------------------------------------------------------

    def transact(self, request: Request, reporter: Reporter) -> dict[str, Any]:
        try:
            path = self.create_transaction(request)
        finally:
            request.close_files()
        if path == NO_TRANSACTION:  # AutomaticUpdateTrigger under the policy `none`
            return {"policy": "none"}
        return self.run_transaction(path, reporter)

    def create_transaction(self, request: Request) -> str:
        """Call the request's OS method; the transaction it returns has not started."""
        args, fds = request_arguments(request)
        (transaction,) = self._call(
            self._os_path(request.osname), OS_INTERFACE, request.method, args, "(o)", fds
        )
        return str(transaction)

    def run_transaction(self, path: str, reporter: Reporter | None = None) -> dict[str, Any]:
        """Start the transaction at `path`, render its signals, return its result when
        it finished; TransactionError with the daemon's message when it failed."""
        return _Run(self, path, reporter or NullReporter()).wait()

    def cancel_transaction(self, path: str) -> None:
        self._call(path, TRANSACTION_INTERFACE, "Cancel", None, None)

    def cancel(self) -> str | None:
        path = str(self.sysroot_property("ActiveTransaction"))
        if path == NO_TRANSACTION:
            return None
        status = self.status()
        what = status.get("transaction") or {}
        self.cancel_transaction(path)
        self._wait_until_inactive(path)
        return describe_transaction(what)

    def _wait_until_inactive(self, path: str) -> None:
        """Until the daemon's active transaction is not `path` any more."""
        from apt_ostree.ostree import Gio, GLib

        context = GLib.MainContext.new()
        context.push_thread_default()
        done = False

        def changed(*_args: Any) -> None:
            nonlocal done
            done = str(self.sysroot_property("ActiveTransaction")) != path

        def timeout() -> bool:
            nonlocal done
            done = True
            return False

        sub = self.connection.signal_subscribe(
            BUS_NAME, PROPERTIES_INTERFACE, "PropertiesChanged", SYSROOT_PATH, None,
            Gio.DBusSignalFlags.NONE, changed,
        )  # fmt: skip
        source = GLib.timeout_source_new_seconds(CANCEL_WAIT_S)
        source.set_callback(timeout)
        source.attach(context)
        try:
            changed()
            while not done:
                context.iteration(True)
        finally:
            source.destroy()
            self.connection.signal_unsubscribe(sub)
            context.pop_thread_default()

    def reload(self) -> None:
        self._call(SYSROOT_PATH, SYSROOT_INTERFACE, "Reload", None, None)


def describe_transaction(t: dict[str, Any]) -> str:
    """`upgrade by pid 1234` (as the Busy message says it)."""
    caller = t.get("caller") or {}
    who = f"pid {caller['pid']}" if caller.get("pid") is not None else caller.get("bus-name", "?")
    return f"{t.get('command', '?')} by {who}"


class _Run:
    """One transaction followed to its end on a private main context."""

    def __init__(self, client: DaemonClient, path: str, reporter: Reporter) -> None:
        self.client = client
        self.path = path
        self.reporter = reporter
        self.result: dict[str, Any] = {}
        self.finished: tuple[bool, str] | None = None
        self._tasks: list[str] = []

    def wait(self) -> dict[str, Any]:
        from apt_ostree.ostree import Gio, GLib

        connection = self.client.connection
        context = GLib.MainContext.new()
        # Signal callbacks run in the context that is thread-default at subscription.
        context.push_thread_default()
        subscriptions = []
        interrupted = False

        def on_interrupt(*_args: Any) -> bool:
            # Ctrl-C: the daemon stops at its next safe point; wait for it. A second
            # Ctrl-C stops waiting (the daemon still cancels: this client leaves).
            nonlocal interrupted
            if interrupted:
                self.finished = (False, "interrupted")
            else:
                interrupted = True
                self._cancel()
            return True

        sigint = GLib.unix_signal_source_new(signal.SIGINT)
        sigint.set_callback(on_interrupt)
        sigint.attach(context)
        try:
            owner = self._daemon_unique_name()
            subscriptions.append(connection.signal_subscribe(
                owner, TRANSACTION_INTERFACE, None, self.path, None,
                Gio.DBusSignalFlags.NONE, self._on_signal,
            ))  # fmt: skip
            subscriptions.append(connection.signal_subscribe(
                DBUS_NAME, DBUS_NAME, "NameOwnerChanged", DBUS_PATH, BUS_NAME,
                Gio.DBusSignalFlags.NONE, self._on_owner_changed,
            ))  # fmt: skip
            # The signals are sent to this connection alone; subscribing first means
            # no early one is dropped by GDBus.
            self.client._call(self.path, TRANSACTION_INTERFACE, "Start", None, None)
            while self.finished is None:
                context.iteration(True)
        finally:
            sigint.destroy()
            # GLib leaves SIGINT at its default action: Python's handler comes back.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sub in subscriptions:
                connection.signal_unsubscribe(sub)
            context.pop_thread_default()
        self.reporter.progress_done()
        success, error = self.finished
        if interrupted and not success:
            raise KeyboardInterrupt
        if not success:
            message, _, output = error.partition("\n")
            if output:
                raise CommandError(message, output=output)
            raise TransactionError(error)
        return self.result

    def _cancel(self) -> None:
        try:
            self.client.cancel_transaction(self.path)
        except DaemonError as e:
            self.reporter.message(f"warning: {e}")

    def _daemon_unique_name(self) -> str:
        from apt_ostree.ostree import Gio, GLib

        reply = self.client.connection.call_sync(
            DBUS_NAME, DBUS_PATH, DBUS_NAME, "GetNameOwner", GLib.Variant("(s)", (BUS_NAME,)),
            GLib.VariantType("(s)"), Gio.DBusCallFlags.NONE, -1, None,
        )  # fmt: skip
        return str(reply.unpack()[0])

    def _on_signal(
        self, _conn: Any, _sender: str, _path: str, _iface: str, name: str, params: GLib.Variant
    ) -> None:
        args = params.unpack()
        if name == "Message":
            self.reporter.message(args[0])
        elif name == "Info":
            self.reporter.info(args[0])
        elif name == "TaskBegin":
            self._tasks.append(args[0])
            self.reporter.task_begin(args[0])
        elif name == "TaskEnd":
            task = self._tasks.pop() if self._tasks else ""
            detail = args[0][len(task) + 2 :] if args[0].startswith(task + ": ") else ""
            self.reporter.task_end(detail)
        elif name == "PercentProgress":
            self.reporter.progress(args[0])
        elif name == "Result":
            self.result = json.loads(args[0])
        elif name == "Finished":
            self.finished = (bool(args[0]), str(args[1]))

    def _on_owner_changed(self, *signal: Any) -> None:
        _name, _old, new = signal[5].unpack()
        if not new and self.finished is None:
            self.finished = (False, "apt-ostreed exited before the transaction finished")
