"""The objects apt-ostreed publishes, their method calls, authorization, the one
active transaction, and exiting when idle. Runs in the GLib main loop."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apt_ostree.daemon.bus import (
    ACCESS_DENIED,
    BUS_NAME,
    BUSY,
    CANNOT_CANCEL,
    FAILED,
    INTROSPECTION,
    INVALID_ARGUMENT,
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
from apt_ostree.daemon.config import CONFIG_PATH, ConfigError, DaemonConfig, load_config
from apt_ostree.daemon.polkit import Authorizer, Verdict
from apt_ostree.daemon.transaction import Caller, Transaction, log, one_line
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib
from apt_ostree.requests import ACTION_PREFIX, METHODS, LocalPackage, Request, RequestError
from apt_ostree.system import operations

DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
# RequestName: fail rather than wait in the queue; a second daemon must not linger.
NAME_FLAG_DO_NOT_QUEUE = 4
NAME_REPLY_PRIMARY_OWNER = 1
# Between releasing the bus name and exiting, calls already sent to us are answered.
EXIT_GRACE_MS = 200
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"

# A handler's answer: a reply now (a GLib.Variant, or None for no values), or
# LATER when it will answer the invocation itself.
LATER = object()
Handler = Callable[[str, str, str, GLib.Variant, Gio.DBusMethodInvocation], Any]


class Daemon:
    def __init__(
        self,
        connection: Gio.DBusConnection,
        sysroot_path: Path,
        *,
        booted: bool,
        idle_exit: int,
        loop: GLib.MainLoop,
        config_path: Path = CONFIG_PATH,
    ) -> None:
        self.connection = connection
        self.config_path = config_path
        self.config = DaemonConfig()
        self.config_error: str | None = None
        with contextlib.suppress(ConfigError):
            self.load_config()
        self.sysroot_path = sysroot_path
        self.booted = booted
        self.idle_exit = idle_exit
        self.loop = loop
        self.active: Transaction | None = None
        self.authorizer = Authorizer(connection)
        self._node = Gio.DBusNodeInfo.new_for_xml(INTROSPECTION)
        self._os_objects: dict[str, str] = {}  # object path -> osname
        self._default_osname = ""
        self._registrations: dict[str, list[int]] = {}  # object path -> registration ids
        self._watches: dict[str, int] = {}  # transaction path -> name watch id
        self._transactions = 0
        self._idle_source: int | None = None
        self._pending_calls = 0  # authorizations and reads in threads
        self._exiting = False

    def load_config(self) -> None:
        """(Re)read the configuration; a bad file keeps the previous settings and is
        reported by Reload and by the automatic update trigger."""
        try:
            self.config = load_config(self.config_path)
        except ConfigError as e:
            self.config_error = str(e)
            log(f"bad configuration: {e}")
            raise
        self.config_error = None

    # -- publishing -------------------------------------------------------------------

    def _register(self, path: str, interface: str, handler: Handler) -> None:
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

    def publish(self, osnames: list[str], default_osname: str) -> None:
        self._register(SYSROOT_PATH, SYSROOT_INTERFACE, self._sysroot_call)
        self.publish_oses(osnames, default_osname)

    def publish_oses(self, osnames: list[str], default_osname: str) -> None:
        self._default_osname = default_osname
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
        if self.active is None and self._pending_calls == 0:
            log(f"idle for {self.idle_exit}s; exiting")
            self._exit()
        else:
            self._touch()
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
        if self.active is None and self._pending_calls == 0:
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
        handler: Handler,
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
                result = handler(sender, path, method, parameters, invocation)
        except Exception as e:
            self._fail(invocation, e)
        else:
            if result is not LATER:
                invocation.return_value(result)

    @staticmethod
    def _fail(invocation: Gio.DBusMethodInvocation, e: BaseException) -> None:
        if isinstance(e, MethodError):
            invocation.return_dbus_error(e.name, str(e))
        elif isinstance(e, RequestError):
            invocation.return_dbus_error(INVALID_ARGUMENT, str(e).strip())
        elif isinstance(e, AptOstreeError):
            invocation.return_dbus_error(FAILED, str(e).strip())
        else:
            traceback.print_exc()
            invocation.return_dbus_error(FAILED, f"internal error: {one_line(repr(e))}")

    def _in_thread(
        self, invocation: Gio.DBusMethodInvocation, work: Callable[[], GLib.Variant | None]
    ) -> object:
        """Answer `invocation` with what `work` returns, computed in a thread: a read
        that may take long (Search may fetch indexes) must not stop the main loop."""
        self._pending_calls += 1

        def reply(result: Any) -> bool:
            self._pending_calls -= 1
            self._touch()
            if isinstance(result, BaseException):
                self._fail(invocation, result)
            else:
                invocation.return_value(result)
            return False

        def target() -> None:
            context = GLib.MainContext.new()
            context.push_thread_default()
            try:
                result: Any = work()
            except Exception as e:
                result = e
            finally:
                context.pop_thread_default()
            GLib.idle_add(reply, result)

        threading.Thread(target=target, name="apt-ostreed-read", daemon=True).start()
        return LATER

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

    def _authorized(
        self,
        invocation: Gio.DBusMethodInvocation,
        caller: Caller,
        actions: list[str],
        then: Callable[[], GLib.Variant | None],
        refused: Callable[[], None] | None = None,
    ) -> object:
        """Ask polkit (uid 0: granted at once), then answer `invocation` with `then()`;
        `refused()` undoes what the call brought (the caller's files) on a no."""
        self._pending_calls += 1

        def done(verdict: Verdict) -> None:
            self._pending_calls -= 1
            self._touch()
            if verdict is not None:
                if refused is not None:
                    refused()
                invocation.return_dbus_error(ACCESS_DENIED, verdict)
                return
            try:
                result = then()
            except Exception as e:
                self._fail(invocation, e)
            else:
                invocation.return_value(result)

        self.authorizer.check(caller, actions, done)
        return LATER

    # -- properties -------------------------------------------------------------------

    def _property_values(self, path: str, interface: str) -> dict[str, GLib.Variant]:
        if interface == SYSROOT_INTERFACE:
            active = self.active.path if self.active is not None else NO_TRANSACTION
            default = os_object_path(self._default_osname) if self._default_osname else "/"
            return {
                "Booted": GLib.Variant("b", self.booted),
                "Path": GLib.Variant("s", str(self.sysroot_path)),
                "DefaultOS": GLib.Variant("o", default),
                "ActiveTransaction": GLib.Variant("o", active),
                "AutomaticUpdatePolicy": GLib.Variant("s", self.config.automatic_update_policy),
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

    def status_document(self) -> dict[str, Any]:
        from apt_ostree.system.status import sysroot_status
        from apt_ostree.system.sysroot import Sysroot

        status = sysroot_status(Sysroot(self.sysroot_path))
        if self.active is not None:
            status["transaction"] = self.active.to_json()
        return status

    def _sysroot_call(
        self,
        sender: str,
        path: str,
        method: str,
        parameters: GLib.Variant,
        invocation: Gio.DBusMethodInvocation,
    ) -> Any:
        from apt_ostree.system import queries

        args = parameters.unpack()
        if method == "GetStatus":
            # The document `apt-ostree status --json` prints, from the same function.
            return GLib.Variant("(s)", (json.dumps(self.status_document(), indent=2),))
        if method == "Reload":
            return self._authorized(
                invocation, self._caller(sender), [ACTION_PREFIX + "reload-daemon"], self.reload
            )
        if method in ("DbList", "DbDiff", "DbVersion"):
            sysroot = self._open_sysroot()
            source = queries.DbSource(sysroot.repo, lambda: sysroot)
            if method == "DbList":
                result: Any = queries.db_list(source, list(args[0]))
            elif method == "DbDiff":
                options = _options(method, args[2], {"base": bool, "changelogs": bool})
                result = queries.db_diff(
                    source, args[0] or None, args[1] or None, base=bool(options.get("base")),
                    changelogs=bool(options.get("changelogs")),
                )  # fmt: skip
            else:
                result = queries.db_version(source, list(args[0]))
            return GLib.Variant("(s)", (json.dumps(result),))
        raise MethodError(UNKNOWN_METHOD, f"no method {method}")

    def _open_sysroot(self) -> Any:
        from apt_ostree.system.sysroot import Sysroot

        return Sysroot(self.sysroot_path)

    def reload(self) -> None:
        """Reload: the configuration and the sysroot's OSes (a new one gets its object)."""
        self.load_config()
        self._refresh_oses()
        log(f"reloaded (AutomaticUpdatePolicy={self.config.automatic_update_policy})")

    # -- org.aptostree.dev.OS ---------------------------------------------------------

    def _os_call(
        self,
        sender: str,
        path: str,
        method: str,
        parameters: GLib.Variant,
        invocation: Gio.DBusMethodInvocation,
    ) -> Any:
        from apt_ostree.system import queries

        osname = self._os_objects[path]
        args = parameters.unpack()
        if method == "GetKernelArgs":
            options = _options(method, args[0], {"deploy-index": int, "import-proc-cmdline": bool})
            kargs = queries.kernel_args(
                self._open_sysroot(), osname, index=options.get("deploy-index"),
                import_proc_cmdline=bool(options.get("import-proc-cmdline")),
            )  # fmt: skip
            return GLib.Variant("(s)", (kargs,))
        if method == "Search":
            terms = list(args[0])

            def search() -> GLib.Variant:
                from apt_ostree.reporter import NullReporter

                found = queries.search(self._open_sysroot(), osname, terms, NullReporter())
                return GLib.Variant("(s)", (json.dumps(found),))

            return self._in_thread(invocation, search)
        if method not in METHODS:
            raise MethodError(UNKNOWN_METHOD, f"no method {method}")
        if method == "AutomaticUpdateTrigger":
            return self._automatic_update(sender, osname, args, invocation)
        request = _request(method, osname, args, invocation)
        try:
            operation = operations.prepare(request)
            self._check_not_busy()
        except BaseException:
            request.close_files()
            raise
        caller = self._caller(sender)

        def create() -> GLib.Variant:
            try:
                self._check_not_busy()
            except BaseException:
                request.close_files()
                raise
            return GLib.Variant("(o)", (self._create(operation, caller),))

        return self._authorized(
            invocation, caller, request.actions(), create, lambda: request.close_files()
        )

    def _automatic_update(
        self,
        sender: str,
        osname: str,
        args: tuple[Any, ...],
        invocation: Gio.DBusMethodInvocation,
    ) -> Any:
        """What the automatic-update policy says: nothing (`/`), or a transaction that
        checks or stages."""
        request = Request("AutomaticUpdateTrigger", [], dict(args[0]), osname=osname)
        request.check_types()
        caller = self._caller(sender)

        def create() -> GLib.Variant:
            if self.config_error is not None:
                raise AptOstreeError(self.config_error)
            policy = self.config.automatic_update_policy
            if policy == "none":
                return GLib.Variant("(o)", (NO_TRANSACTION,))
            operation = operations.prepare_automatic_update(request, policy)
            self._check_not_busy()
            return GLib.Variant("(o)", (self._create(operation, caller),))

        return self._authorized(invocation, caller, request.actions(), create)

    def _check_not_busy(self) -> None:
        if self.active is not None:
            raise MethodError(BUSY, self.active.busy_message())
        if self._exiting:
            raise MethodError(FAILED, "apt-ostreed is exiting; call again")

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

    def _emit(self, t: Transaction, name: str, args: GLib.Variant) -> None:
        # Progress is the caller's business alone: the signal goes to its bus name.
        with contextlib.suppress(GLib.Error):
            self.connection.emit_signal(t.caller.sender, t.path, TRANSACTION_INTERFACE, name, args)

    def _caller_vanished(self, t: Transaction) -> None:
        if t.finished:
            return
        if not t.started:
            log(f"transaction {t.number}: its caller left before Start(); dropped")
            t.cancel_unstarted()
        elif t.cancel():
            # Ctrl-C or a killed client: what it asked for is not wanted any more.
            log(f"transaction {t.number}: its caller left; cancelling")
        else:
            log(f"transaction {t.number}: its caller left; past the point of no return")

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
            osnames = sorted({d.osname for d in sysroot.deployments()})
            default = sysroot.default_osname() if osnames else ""
            self.publish_oses(osnames, default)
        except AptOstreeError as e:
            log(f"cannot list the sysroot's OSes: {e}")

    # -- org.aptostree.dev.Transaction ------------------------------------------------

    def _transaction_at(self, path: str) -> Transaction:
        if self.active is None or self.active.path != path:
            raise MethodError("org.freedesktop.DBus.Error.UnknownObject", f"no transaction {path}")
        return self.active

    def _transaction_call(
        self,
        sender: str,
        path: str,
        method: str,
        parameters: GLib.Variant,
        invocation: Gio.DBusMethodInvocation,
    ) -> Any:
        t = self._transaction_at(path)
        if t.finished:
            raise MethodError(FAILED, f"transaction {t.number} has finished")
        if method == "Start":
            if sender != t.caller.sender:
                raise MethodError(
                    ACCESS_DENIED, f"only the caller that made transaction {t.number} starts it"
                )
            if t.started:
                raise MethodError(FAILED, f"transaction {t.number} was already started")
            t.start()
            return None
        if method == "Cancel":
            if sender == t.caller.sender:
                return self._cancel(t)
            caller = self._caller(sender)
            return self._authorized(
                invocation, caller, [ACTION_PREFIX + "cancel"], lambda: self._cancel(t)
            )
        raise MethodError(UNKNOWN_METHOD, f"no method {method}")

    def _cancel(self, t: Transaction) -> None:
        if t.finished:
            raise MethodError(FAILED, f"transaction {t.number} has finished")
        started = t.started
        if not t.cancel():
            raise MethodError(
                CANNOT_CANCEL,
                f"cannot cancel transaction {t.number} ({t.command}): it is writing the new"
                " deployment, which completes",
            )
        what = "cancel requested" if started else "cancelled before Start()"
        log(f"transaction {t.number}: {what}")


def _options(method: str, options: dict[str, Any], known: dict[str, type]) -> dict[str, Any]:
    """`options` (a{sv}) of a read method, every key known and of the right type."""
    for key, value in options.items():
        if key not in known:
            raise RequestError(f'{method}: unknown option "{key}"')
        if type(value) is not known[key]:
            raise RequestError(f'{method}: option "{key}" has the wrong type')
    return options


def _request(
    method: str, osname: str, args: tuple[Any, ...], invocation: Gio.DBusMethodInvocation
) -> Request:
    """The Request of an OS method call; `ah` options become the caller's files, which
    must be regular files (read later, never opened by path)."""
    spec = METHODS[method]
    *positional, options = args
    options = dict(options)
    fd_list = invocation.get_message().get_unix_fd_list()
    received: list[int] = []
    try:
        for key, kind in spec.options.items():
            if kind != "ah" or key not in options:
                continue
            files = []
            for index in options[key]:
                if fd_list is None or not 0 <= index < fd_list.get_length():
                    raise RequestError(f'{method}: option "{key}": no file descriptor {index}')
                fd = fd_list.get(index)
                received.append(fd)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise RequestError(f'{method}: option "{key}": not a regular file')
                try:
                    label = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    label = f"file descriptor {index}"
                files.append(LocalPackage(label, fd=fd))
            options[key] = files
    except BaseException:
        for fd in received:
            os.close(fd)
        raise
    return Request(method, list(positional), options, osname=osname)
