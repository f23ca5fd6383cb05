"""One transaction: an operation run in a worker thread under the sysroot lock, its
progress sent as D-Bus signals from the main loop."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.cancel import Cancellable, cancellable_scope, check_cancelled
from apt_ostree.errors import AptOstreeError, CommandError
from apt_ostree.ostree import GLib
from apt_ostree.reporter import Reporter, percent_of
from apt_ostree.requests import METHODS
from apt_ostree.system.operations import Operation

# Queues a signal: (signal name, GVariant of its arguments).
Emit = Callable[[str, GLib.Variant], None]


@dataclass
class Caller:
    """Who called a method: unique bus name, uid, pid."""

    sender: str
    uid: int
    pid: int | None = None

    def describe(self) -> str:
        pid = f", pid {self.pid}" if self.pid is not None else ""
        return f"{self.sender} (uid {self.uid}{pid})"

    def to_json(self) -> dict[str, object]:
        return {"bus-name": self.sender, "uid": self.uid, "pid": self.pid}


class SignalReporter(Reporter):
    """The reporter the system functions get in the daemon: every call becomes a
    signal. Thread-safe: it only queues; the main loop emits (see Transaction)."""

    def __init__(self, emit: Emit) -> None:
        super().__init__(quiet=False)
        self._emit = emit
        self._names: list[str] = []
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        self._emit("Message", GLib.Variant("(s)", (text,)))

    def info(self, text: str) -> None:
        # Details (dpkg's output, ...): the client shows them unless asked to be quiet.
        self._emit("Info", GLib.Variant("(s)", (text,)))

    def task_begin(self, name: str) -> None:
        check_cancelled()
        with self._lock:
            self._names.append(name)
        self._emit("TaskBegin", GLib.Variant("(s)", (name,)))

    def task_end(self, detail: str = "") -> None:
        with self._lock:
            if not self._names:
                return
            name = self._names.pop()
        self._emit("TaskEnd", GLib.Variant("(s)", (f"{name}: {detail}" if detail else name,)))

    def progress(self, text: str) -> None:
        check_cancelled()
        self._emit("PercentProgress", GLib.Variant("(su)", (text, percent_of(text))))

    def progress_done(self) -> None:
        pass


class Transaction:
    """Created by an OS method, started by its caller's Start(), finished once.

    The work runs in a thread so that the main loop keeps answering (GetStatus,
    properties); signals are queued by the thread and emitted by the main loop
    in order, to the caller alone (unicast). `on_finished` runs in the main loop
    after Finished was sent.
    """

    def __init__(
        self,
        number: int,
        path: str,
        operation: Operation,
        caller: Caller,
        sysroot_path: Path,
        emit_signal: Callable[[Transaction, str, GLib.Variant], None],
        on_finished: Callable[[Transaction], None],
    ) -> None:
        self.number = number
        self.path = path
        self.operation = operation
        self.caller = caller
        self.sysroot_path = sysroot_path
        self.started = False
        self.finished = False
        self.cancellable = Cancellable()
        self._emit_signal = emit_signal
        self._on_finished = on_finished
        self._queue: queue.Queue[tuple[str, GLib.Variant]] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def method(self) -> str:
        return self.operation.method

    @property
    def osname(self) -> str:
        return self.operation.request.osname or ""

    @property
    def command(self) -> str:
        """What a person would call it: `upgrade`, `kargs`, ..."""
        return METHODS[self.method].command

    def describe(self) -> str:
        return f"{self.method} of {self.osname} by {self.caller.describe()}"

    def busy_message(self) -> str:
        """What a second caller is told: who holds the system."""
        who = f"pid {self.caller.pid}" if self.caller.pid is not None else self.caller.sender
        return f"Busy: {self.command} by {who}"

    def to_json(self) -> dict[str, object]:
        """The `transaction` of `status --json`."""
        return {
            "method": self.method,
            "command": self.command,
            "osname": self.osname,
            "path": self.path,
            "started": self.started,
            "caller": self.caller.to_json(),
        }

    @property
    def lock_command(self) -> str:
        """How the sysroot lock names this transaction to a concurrent `apt-ostree`."""
        pid = f" for pid {self.caller.pid}" if self.caller.pid is not None else ""
        return f"apt-ostreed {self.method}{pid}"

    # -- signals, from any thread -------------------------------------------------

    def queue_signal(self, name: str, args: GLib.Variant) -> None:
        self._queue.put((name, args))
        # Default priority, as GDBus dispatches calls: progress is not starved by idle work.
        GLib.idle_add(self._flush, priority=GLib.PRIORITY_DEFAULT)

    def _flush(self) -> bool:
        """In the main loop: emit every queued signal, oldest first."""
        while True:
            try:
                name, args = self._queue.get_nowait()
            except queue.Empty:
                return False
            self._emit_signal(self, name, args)
            if name == "Finished":
                self.finished = True
                self.operation.request.close_files()
                self._on_finished(self)

    # -- running --------------------------------------------------------------------

    def start(self) -> None:
        self.started = True
        self._thread = threading.Thread(
            target=self._run, name=f"transaction-{self.number}", daemon=False
        )
        self._thread.start()

    def cancel(self) -> bool:
        """Stop at the next safe point (or now, if not started); False when the work is
        past the point of no return and will complete."""
        if not self.started:
            self.cancel_unstarted()
            return True
        return self.cancellable.cancel()

    def cancel_unstarted(self) -> None:
        """In the main loop: finish a transaction that never started (nothing was done),
        before the next call is dispatched."""
        self.started = True
        self.queue_signal("Finished", GLib.Variant("(bs)", (False, "cancelled")))
        self._flush()

    def _run(self) -> None:
        from apt_ostree.system.sysroot import Sysroot

        log(f"transaction {self.number}: {self.describe()}: started")
        begin = time.monotonic()
        reporter = SignalReporter(self.queue_signal)
        # libostree iterates the thread-default main context (a pull does until it is
        # done): without one of its own, this thread would wait for the main loop's.
        context = GLib.MainContext.new()
        context.push_thread_default()
        try:
            with (
                cancellable_scope(self.cancellable),
                Sysroot(self.sysroot_path).locked(self.lock_command) as sysroot,
            ):
                self.cancellable.check()
                result = self.operation.run(sysroot, reporter)
        except CommandError as e:
            # The program's output follows the message, as the CLI prints it.
            output = e.output.strip() if e.output and e.output.strip() not in str(e) else ""
            success, error = False, "\n".join(filter(None, [str(e).strip(), output]))
        except AptOstreeError as e:
            success, error = False, str(e).strip()
        except Exception as e:
            # A bug: the traceback goes to the journal, the caller gets one line.
            traceback.print_exc(file=sys.stderr)
            success, error = False, f"internal error: {one_line(repr(e))}; see the daemon's log"
        else:
            success, error = True, ""
            self.queue_signal("Result", GLib.Variant("(s)", (json.dumps(result),)))
        finally:
            context.pop_thread_default()
        took = f"{time.monotonic() - begin:.1f}s"
        log(f"transaction {self.number}: {'succeeded' if success else 'failed: ' + error} ({took})")
        self.queue_signal("Finished", GLib.Variant("(bs)", (success, error)))


def one_line(text: str) -> str:
    return " ".join(text.split())


def log(text: str) -> None:
    print(f"apt-ostreed: {text}", file=sys.stderr, flush=True)
