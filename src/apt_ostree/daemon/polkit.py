"""Who may do what: uid 0 always; everyone else as polkit decides, one action per
kind of change (data/org.aptostree.dev.policy, docs/dbus.md).

The daemon asks polkit's authority on its own bus (the system bus; a private bus
in the tests, where a stand-in answers) with the caller's unique bus name as the
subject, as rpm-ostreed does, allowing user interaction so that an
authentication agent can ask for a password. The question is asynchronous: the
main loop keeps answering while an agent waits for the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apt_ostree.daemon.transaction import Caller, log
from apt_ostree.ostree import Gio, GLib

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_INTERFACE = "org.freedesktop.PolicyKit1.Authority"
ALLOW_USER_INTERACTION = 1
# An agent may wait for a person to type a password.
CHECK_TIMEOUT_MS = 10 * 60 * 1000

# None: granted; else the one line the caller is told.
Verdict = str | None


class Authorizer:
    def __init__(self, connection: Gio.DBusConnection) -> None:
        self.connection = connection

    def check(self, caller: Caller, actions: list[str], done: Callable[[Verdict], None]) -> None:
        """Call `done(None)` once every action in `actions` is granted to `caller`, or
        `done(message)` naming the first one refused. Always from the main loop."""
        if caller.uid == 0:
            done(None)
            return
        remaining = list(actions)

        def ask_next() -> None:
            if not remaining:
                done(None)
                return
            action = remaining[0]
            subject = ("system-bus-name", {"name": GLib.Variant("s", caller.sender)})
            args = GLib.Variant(
                "((sa{sv})sa{ss}us)", (subject, action, {}, ALLOW_USER_INTERACTION, "")
            )
            self.connection.call(
                POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE, "CheckAuthorization", args,
                GLib.VariantType("((bba{ss}))"), Gio.DBusCallFlags.NONE, CHECK_TIMEOUT_MS,
                None, answered, action,
            )  # fmt: skip

        def answered(connection: Gio.DBusConnection, result: Any, action: str) -> None:
            try:
                reply = connection.call_finish(result)
            except GLib.Error as e:
                message = Gio.DBusError.get_remote_error(e) or ""
                detail = e.message.split(": ", 1)[-1] if message else e.message
                log(f"polkit: cannot check {action} for {caller.describe()}: {e.message}")
                done(f"not authorized: {action} (uid {caller.uid}; cannot ask polkit: {detail})")
                return
            authorized, challenge, _details = reply.unpack()[0]
            if not authorized:
                log(f"polkit: {action} refused to {caller.describe()}")
                why = "; authentication required" if challenge else ""
                done(f"not authorized: {action} (uid {caller.uid}{why})")
                return
            remaining.pop(0)
            ask_next()

        ask_next()
