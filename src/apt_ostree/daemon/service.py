"""The objects apt-ostreed publishes, their method calls, authorization, the one
active transaction, and exiting when idle. Runs in the GLib main loop."""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apt_ostree.daemon import operations
from apt_ostree.daemon.bus import (
    ACCESS_DENIED,
    BUS_NAME,
    BUSY,
    CANNOT_CANCEL,
    FAILED,
    INTROSPECTION,
    NO_TRANSACTION,
    OS_INTERFACE,
    PROPERTIES_INTERFACE,
    SYSROOT_INTERFACE,
    SYSROOT_PATH,
    TRANSACTION_INTERFACE,
    MethodError,
    os_object_path,
    transaction_path,
)
from apt_ostree.daemon.transaction import Caller, Transaction, log, one_line
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib

DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
# RequestName: fail rather than wait in the queue; a second daemon must not linger.
NAME_FLAG_DO_NOT_QUEUE = 4
NAME_REPLY_PRIMARY_OWNER = 1
# Between releasing the bus name and exiting, calls already sent to us are answered.
EXIT_GRACE_MS = 200

NOT_AUTHORIZED = "polkit authorization is not implemented yet: only root may {what}"


class Daemon:
    def __init__(
        self,
        connection: Gio.DBusConnection,
        sysroot_path: Path,
        *,
        booted: bool,
        idle_exit: int,
        loop: GLib.MainLoop,
    ) -> None:
        self.connection = connection
        self.sysroot_path = sysroot_path
        self.booted = booted
        self.idle_exit = idle_exit
        self.loop = loop
        self.active: Transaction | None = None
        self._node = Gio.DBusNodeInfo.new_for_xml(INTROSPECTION)
        self._os_objects: dict[str, str] = {}  # object path -> osname
        self._registrations: dict[str, list[int]] = {}  # object path -> registration ids
        self._watches: dict[str, int] = {}  # transaction path -> name watch id
        self._transactions = 0
        self._idle_source: int | None = None
        self._exiting = False

    # -- publishing -------------------------------------------------------------------

    def _register(
        self, path: str, interface: str, handler: Callable[..., GLib.Variant | None]
    ) -> None:
        info = self._node.lookup_interface(interface)

        def on_call(
            connection: Gio.DBusConnection,
            sender: str,
            object_path: str,
            interface_name: str,
            method_name: str,
            parameters: GLib.Variant,
            invocation: Gio.DBusMethodInvocation,
        ) -> None:
            self._dispatch(handler, sender, object_path, interface_name, interface,
                           method_name, parameters, invocation)  # fmt: skip

        # No property getter: GDBus then routes org.freedesktop.DBus.Properties calls
        # to on_call, where `_properties` answers them.
        reg = self.connection.register_object(path, info, on_call, None, None)
        self._registrations.setdefault(path, []).append(reg)

    def _unregister(self, path: str) -> None:
        for reg in self._registrations.pop(path, []):
            self.connection.unregister_object(reg)

    def publish(self, osnames: list[str]) -> None:
        self._register(SYSROOT_PATH, SYSROOT_INTERFACE, self._sysroot_call)
        self.publish_oses(osnames)

    def publish_oses(self, osnames: list[str]) -> None:
        for osname in osnames:
            path = os_object_path(osname)
            if path not in self._os_objects:
                self._os_objects[path] = osname
                self._register(path, OS_INTERFACE, self._os_call)

    def own_name(self) -> None:
        """Take the bus name once the objects are there, so that the first caller finds
        them; fail at once if another daemon has it."""
        reply = self.connection.call_sync(
            DBUS_NAME, DBUS_PATH, DBUS_NAME, "RequestName",
            GLib.Variant("(su)", (BUS_NAME, NAME_FLAG_DO_NOT_QUEUE)),
            GLib.VariantType("(u)"), Gio.DBusCallFlags.NONE, -1, None,
        )  # fmt: skip
        if reply.unpack()[0] != NAME_REPLY_PRIMARY_OWNER:
            raise AptOstreeError(
                f"the bus name {BUS_NAME} is already owned: is another apt-ostreed running?"
            )
        self.connection.signal_subscribe(
            DBUS_NAME, DBUS_NAME, "NameLost", DBUS_PATH, BUS_NAME,
            Gio.DBusSignalFlags.NONE, self._on_name_lost,
        )  # fmt: skip
        self._touch()

    def _on_name_lost(self, *_args: Any) -> None:
        if not self._exiting:
            log(f"lost the bus name {BUS_NAME}; exiting")
            self._exit()

    # -- idle exit and shutdown -------------------------------------------------------

    def _touch(self) -> None:
        """Something happened: the idle countdown starts again."""
        if self._idle_source is not None:
            GLib.source_remove(self._idle_source)
            self._idle_source = None
        if self.idle_exit > 0 and not self._exiting:
            self._idle_source = GLib.timeout_add_seconds(self.idle_exit, self._on_idle)

    def _on_idle(self) -> bool:
        self._idle_source = None
        if self.active is None:
            log(f"idle for {self.idle_exit}s; exiting")
            self._exit()
        return False

    def _exit(self) -> None:
        """Give the name back (the next call activates a new daemon), answer what was
        already sent, then leave the main loop once no transaction runs."""
        if not self._exiting:
            self._exiting = True
            # If the bus is gone, there is nothing to give back.
            with contextlib.suppress(GLib.Error):
                self.connection.call_sync(
                    DBUS_NAME, DBUS_PATH, DBUS_NAME, "ReleaseName",
                    GLib.Variant("(s)", (BUS_NAME,)), None, Gio.DBusCallFlags.NONE, -1, None,
                )  # fmt: skip
        GLib.timeout_add(EXIT_GRACE_MS, self._quit_when_done)

    def _quit_when_done(self) -> bool:
        if self.active is None:
            self.loop.quit()
        return False

    def terminate(self) -> bool:
        """SIGTERM/SIGINT: exit now, or after the running transaction; one that was
        not started is dropped."""
        if self.active is not None and not self.active.started:
            log(f"transaction {self.active.number}: dropped before Start()")
            self.active.cancel_unstarted()
        elif self.active is not None:
            log(f"exiting after transaction {self.active.number}")
        self._exit()
        return True

    # -- calls ------------------------------------------------------------------------

    def _dispatch(
        self,
        handler: Callable[..., GLib.Variant | None],
        sender: str,
        path: str,
        interface_name: str,
        interface: str,
        method: str,
        parameters: GLib.Variant,
        invocation: Gio.DBusMethodInvocation,
    ) -> None:
        self._touch()
        try:
            if interface_name == PROPERTIES_INTERFACE:
                result = self._properties(path, interface, method, parameters.unpack())
            else:
                result = handler(sender, path, method, parameters.unpack())
        except MethodError as e:
            invocation.return_dbus_error(e.name, str(e))
        except AptOstreeError as e:
            invocation.return_dbus_error(FAILED, str(e).strip())
        except Exception as e:
            traceback.print_exc()
            invocation.return_dbus_error(FAILED, f"internal error: {one_line(repr(e))}")
        else:
            invocation.return_value(result)

    def _caller(self, sender: str) -> Caller:
        def ask(method: str) -> int:
            reply = self.connection.call_sync(
                DBUS_NAME, DBUS_PATH, DBUS_NAME, method, GLib.Variant("(s)", (sender,)),
                GLib.VariantType("(u)"), Gio.DBusCallFlags.NONE, -1, None,
            )  # fmt: skip
            return int(reply.unpack()[0])

        uid = ask("GetConnectionUnixUser")
        try:
            pid: int | None = ask("GetConnectionUnixProcessID")
        except GLib.Error:
            pid = None
        return Caller(sender, uid, pid)

    def _authorize(self, sender: str, what: str) -> Caller:
        """v0: uid 0 may do anything; everyone else may only read (docs/dbus.md)."""
        caller = self._caller(sender)
        if caller.uid != 0:
            raise MethodError(ACCESS_DENIED, NOT_AUTHORIZED.format(what=what))
        return caller

    # -- properties -------------------------------------------------------------------

    def _property_values(self, path: str, interface: str) -> dict[str, GLib.Variant]:
        if interface == SYSROOT_INTERFACE:
            active = self.active.path if self.active is not None else NO_TRANSACTION
            return {
                "Booted": GLib.Variant("b", self.booted),
                "Path": GLib.Variant("s", str(self.sysroot_path)),
                "ActiveTransaction": GLib.Variant("o", active),
            }
        if interface == OS_INTERFACE:
            return {"Name": GLib.Variant("s", self._os_objects[path])}
        if interface == TRANSACTION_INTERFACE:
            t = self._transaction_at(path)
            return {
                "Method": GLib.Variant("s", t.method),
                "Caller": GLib.Variant("s", t.caller.describe()),
                "Started": GLib.Variant("b", t.started),
            }
        return {}

    def _properties(
        self, path: str, interface: str, method: str, args: tuple[Any, ...]
    ) -> GLib.Variant:
        if args[0] != interface:
            raise MethodError(
                "org.freedesktop.DBus.Error.UnknownInterface", f"no interface {args[0]}"
            )
        values = self._property_values(path, interface)
        if method == "GetAll":
            return GLib.Variant("(a{sv})", (values,))
        if method == "Get":
            if args[1] not in values:
                raise MethodError(
                    "org.freedesktop.DBus.Error.UnknownProperty", f"no property {args[1]}"
                )
            return GLib.Variant("(v)", (values[args[1]],))
        raise MethodError(
            "org.freedesktop.DBus.Error.PropertyReadOnly", "the properties are read-only"
        )

    def _active_changed(self) -> None:
        values = self._property_values(SYSROOT_PATH, SYSROOT_INTERFACE)
        changed = {"ActiveTransaction": values["ActiveTransaction"]}
        self.connection.emit_signal(
            None, SYSROOT_PATH, PROPERTIES_INTERFACE, "PropertiesChanged",
            GLib.Variant("(sa{sv}as)", (SYSROOT_INTERFACE, changed, [])),
        )  # fmt: skip

    # -- org.aptostree.dev.Sysroot ----------------------------------------------------

    def _sysroot_call(
        self, sender: str, path: str, method: str, args: tuple[Any, ...]
    ) -> GLib.Variant:
        if method == "GetStatus":
            from apt_ostree.system.status import sysroot_status
            from apt_ostree.system.sysroot import Sysroot

            status = sysroot_status(Sysroot(self.sysroot_path))
            # The document `apt-ostree status --json` prints, from the same function.
            return GLib.Variant("(s)", (json.dumps(status, indent=2),))
        raise MethodError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {method}")

    # -- org.aptostree.dev.OS ---------------------------------------------------------

    def _os_call(self, sender: str, path: str, method: str, args: tuple[Any, ...]) -> GLib.Variant:
        caller = self._authorize(sender, f"call {method}")
        osname = self._os_objects[path]
        if method == "Upgrade":
            operation = operations.upgrade_operation(osname, args[0])
        elif method == "Rollback":
            operation = operations.rollback_operation(osname, args[0])
        elif method == "KernelArgs":
            operation = operations.kernel_args_operation(osname, args[0], args[1], args[2])
        elif method == "PkgChange":
            operation = operations.pkg_change_operation(osname, args[0], args[1], args[2])
        elif method == "Cleanup":
            operation = operations.cleanup_operation(osname, args[0])
        else:
            raise MethodError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {method}")
        if self.active is not None:
            raise MethodError(BUSY, f"another transaction is active: {self.active.describe()}")
        if self._exiting:
            raise MethodError(FAILED, "apt-ostreed is exiting; call again")
        return GLib.Variant("(o)", (self._create(operation, caller),))

    def _create(self, operation: operations.Operation, caller: Caller) -> str:
        self._transactions += 1
        path = transaction_path(self._transactions)
        t = Transaction(
            self._transactions, path, operation, caller, self.sysroot_path,
            emit_signal=self._emit, on_finished=self._finished,
        )  # fmt: skip
        self.active = t
        self._register(path, TRANSACTION_INTERFACE, self._transaction_call)
        # A caller that goes away before Start() must not keep the daemon busy.
        self._watches[path] = Gio.bus_watch_name_on_connection(
            self.connection, caller.sender, Gio.BusNameWatcherFlags.NONE, None,
            lambda *_: self._caller_vanished(t),
        )  # fmt: skip
        log(f"transaction {t.number}: {t.describe()}: created")
        self._active_changed()
        return path

    def _emit(self, path: str, interface: str, name: str, args: GLib.Variant) -> None:
        self.connection.emit_signal(None, path, interface, name, args)

    def _caller_vanished(self, t: Transaction) -> None:
        if not t.started:
            log(f"transaction {t.number}: its caller left before Start(); dropped")
            t.cancel_unstarted()

    def _finished(self, t: Transaction) -> None:
        watch = self._watches.pop(t.path, None)
        if watch is not None:
            Gio.bus_unwatch_name(watch)
        self._unregister(t.path)
        if self.active is t:
            self.active = None
            self._active_changed()
        self._refresh_oses()
        self._touch()
        if self._exiting:
            GLib.timeout_add(EXIT_GRACE_MS, self._quit_when_done)

    def _refresh_oses(self) -> None:
        from apt_ostree.system.sysroot import Sysroot

        try:
            sysroot = Sysroot(self.sysroot_path)
            self.publish_oses(sorted({d.osname for d in sysroot.deployments()}))
        except AptOstreeError as e:
            log(f"cannot list the sysroot's OSes: {e}")

    # -- org.aptostree.dev.Transaction ------------------------------------------------

    def _transaction_at(self, path: str) -> Transaction:
        if self.active is None or self.active.path != path:
            raise MethodError("org.freedesktop.DBus.Error.UnknownObject", f"no transaction {path}")
        return self.active

    def _transaction_call(
        self, sender: str, path: str, method: str, args: tuple[Any, ...]
    ) -> GLib.Variant | None:
        t = self._transaction_at(path)
        if sender != t.caller.sender:
            self._authorize(sender, f"{method.lower()} another caller's transaction")
        if t.finished:
            raise MethodError(FAILED, f"transaction {t.number} has finished")
        if method == "Start":
            if t.started:
                raise MethodError(FAILED, f"transaction {t.number} was already started")
            t.start()
            return None
        if method == "Cancel":
            if t.started:
                raise MethodError(
                    CANNOT_CANCEL,
                    f"cannot cancel transaction {t.number} ({t.method}): it is running, and"
                    " apt-ostreed cannot stop it safely yet",
                )
            log(f"transaction {t.number}: cancelled before Start()")
            t.cancel_unstarted()
            return None
        raise MethodError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {method}")
