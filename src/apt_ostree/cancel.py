"""Cancelling a change at its safe points.

apt-ostreed runs each transaction with a `Cancellable` in scope (per thread). The
work below stops there when asked:

- at every step and progress report (`Reporter.task_begin`, `Reporter.progress`),
  by raising `Cancelled`, which unwinds through the `with` blocks that undo what
  was begun (mounts, temporary trees, the sysroot lock);
- inside a pull, through the Gio.Cancellable that libostree gets (a failed pull
  writes no ref);
- never after `point_of_no_return()`, which the code that writes deployments
  calls first: from there on the change completes, and a Cancel is refused.

Without a Cancellable in scope (the in-process CLI) all of this does nothing;
Ctrl-C there is a KeyboardInterrupt, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from apt_ostree.errors import AptOstreeError

if TYPE_CHECKING:
    from apt_ostree.ostree import Gio


class Cancelled(AptOstreeError):
    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class Cancellable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._committed = False
        self._gio: Gio.Cancellable | None = None

    def cancel(self) -> bool:
        """Ask the work to stop at its next safe point; False when it is past the point
        of no return (it will complete)."""
        with self._lock:
            if self._committed:
                return False
            self._requested = True
            gio = self._gio
        if gio is not None:
            gio.cancel()
        return True

    @property
    def requested(self) -> bool:
        return self._requested

    @property
    def committed(self) -> bool:
        return self._committed

    def check(self) -> None:
        if self._requested and not self._committed:
            raise Cancelled()

    def commit(self) -> None:
        """From here on the work completes: a request to cancel that came first wins."""
        with self._lock:
            if self._requested:
                raise Cancelled()
            self._committed = True

    @property
    def gio(self) -> Gio.Cancellable:
        from apt_ostree.ostree import Gio

        with self._lock:
            if self._gio is None:
                self._gio = Gio.Cancellable()
                if self._requested:
                    self._gio.cancel()
            return self._gio


_local = threading.local()


@contextmanager
def cancellable_scope(cancellable: Cancellable) -> Iterator[Cancellable]:
    """The work of this thread, in the `with` block, can be cancelled by `cancellable`."""
    previous = getattr(_local, "current", None)
    _local.current = cancellable
    try:
        yield cancellable
    finally:
        _local.current = previous


def current() -> Cancellable | None:
    c: Cancellable | None = getattr(_local, "current", None)
    return c


def check_cancelled() -> None:
    """A safe point: raise Cancelled if the work was asked to stop."""
    c = current()
    if c is not None:
        c.check()


def point_of_no_return() -> None:
    """About to write what must not be left half-done (deployments, the bootloader
    configuration, pruning): stop now if asked, else never."""
    c = current()
    if c is not None:
        c.commit()


def gio_cancellable() -> Gio.Cancellable | None:
    """For libostree calls that can be interrupted (pulls); None without a scope."""
    c = current()
    return c.gio if c is not None else None
