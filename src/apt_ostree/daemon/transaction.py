"""One transaction: an operation run in a worker thread under the sysroot lock, its
progress sent as D-Bus signals from the main loop."""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.daemon.bus import TRANSACTION_INTERFACE
from apt_ostree.daemon.operations import Operation
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib
from apt_ostree.reporter import Reporter

# Queues a signal: (signal name, GVariant of its arguments).
Emit = Callable[[str, GLib.Variant], None]

_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")


@dataclass
class Caller:
    """Who called a method: unique bus name, uid, pid."""

    sender: str
    uid: int
    pid: int | None = None

    def describe(self) -> str:
        pid = f", pid {self.pid}" if self.pid is not None else ""
        return f"{self.sender} (uid {self.uid}{pid})"


def percent_of(text: str) -> int:
    """A percentage from the first "done/total" in a progress text; 0 without one."""
    match = _FRACTION.search(text)
    if not match or int(match.group(2)) == 0:
        return 0
    return min(100, int(match.group(1)) * 100 // int(match.group(2)))


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
        self._emit("Message", GLib.Variant("(s)", (text,)))

    def task_begin(self, name: str) -> None:
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
        self._emit("PercentProgress", GLib.Variant("(su)", (text, percent_of(text))))

    def progress_done(self) -> None:
        pass


class Transaction:
    """Created by an OS method, started by its caller's Start(), finished once.

    The work runs in a thread so that the main loop keeps answering (GetStatus,
    properties); signals are queued by the thread and emitted by the main loop
    in order. `on_finished` runs in the main loop after Finished was emitted.
    """

    def __init__(
        self,
        number: int,
        path: str,
        operation: Operation,
        caller: Caller,
        sysroot_path: Path,
        emit_signal: Callable[[str, str, str, GLib.Variant], None],
        on_finished: Callable[[Transaction], None],
    ) -> None:
        self.number = number
        self.path = path
        self.operation = operation
        self.caller = caller
        self.sysroot_path = sysroot_path
        self.started = False
        self.finished = False
        self._emit_signal = emit_signal
        self._on_finished = on_finished
        self._queue: queue.Queue[tuple[str, GLib.Variant]] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def method(self) -> str:
        return self.operation.method

    def describe(self) -> str:
        return f"{self.method} of {self.operation.osname} by {self.caller.describe()}"

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
            self._emit_signal(self.path, TRANSACTION_INTERFACE, name, args)
            if name == "Finished":
                self.finished = True
                self._on_finished(self)

    # -- running --------------------------------------------------------------------

    def start(self) -> None:
        self.started = True
        self._thread = threading.Thread(
            target=self._run, name=f"transaction-{self.number}", daemon=False
        )
        self._thread.start()

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
            with Sysroot(self.sysroot_path).locked(self.lock_command) as sysroot:
                self.operation.run(sysroot, reporter)
        except AptOstreeError as e:
            success, error = False, str(e).strip()
        except Exception as e:
            # A bug: the traceback goes to the journal, the caller gets one line.
            traceback.print_exc(file=sys.stderr)
            success, error = False, f"internal error: {one_line(repr(e))}; see the daemon's log"
        else:
            success, error = True, ""
        finally:
            context.pop_thread_default()
        took = f"{time.monotonic() - begin:.1f}s"
        log(f"transaction {self.number}: {'succeeded' if success else 'failed: ' + error} ({took})")
        self.queue_signal("Finished", GLib.Variant("(bs)", (success, error)))


def one_line(text: str) -> str:
    return " ".join(text.split())


def log(text: str) -> None:
    print(f"apt-ostreed: {text}", file=sys.stderr, flush=True)
