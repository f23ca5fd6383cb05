"""Cancelling at safe points, never past the point of no return."""

from __future__ import annotations

import pytest

from apt_ostree.cancel import (
    Cancellable,
    Cancelled,
    cancellable_scope,
    check_cancelled,
    point_of_no_return,
)
from apt_ostree.reporter import NullReporter


def test_a_cancelled_transaction_stops_at_its_next_step() -> None:
    c = Cancellable()
    reporter = NullReporter()
    with cancellable_scope(c):
        reporter.task_begin("Pulling")
        assert c.cancel()
        with pytest.raises(Cancelled, match=r"^cancelled$"):
            reporter.task_begin("Resolving packages")
        with pytest.raises(Cancelled):
            reporter.progress("Receiving objects: 1/10")


def test_a_cancel_that_comes_first_wins_over_the_point_of_no_return() -> None:
    c = Cancellable()
    with cancellable_scope(c):
        c.cancel()
        with pytest.raises(Cancelled):
            point_of_no_return()


def test_past_the_point_of_no_return_a_cancel_is_refused() -> None:
    c = Cancellable()
    with cancellable_scope(c):
        point_of_no_return()
        assert not c.cancel()
        check_cancelled()  # nothing raised: the work completes


def test_the_pull_is_interrupted_through_gio() -> None:
    c = Cancellable()
    gio = c.gio
    assert not gio.is_cancelled()
    c.cancel()
    assert gio.is_cancelled()


def test_without_a_scope_nothing_is_ever_cancelled() -> None:
    check_cancelled()
    point_of_no_return()
