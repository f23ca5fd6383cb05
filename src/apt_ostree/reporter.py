"""Progress and messages: one reporter that the CLI renders on a terminal and
the daemon turns into D-Bus signals."""

from __future__ import annotations

import re
import sys
import time
from typing import TextIO

from apt_ostree.cancel import check_cancelled

_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")
BAR_WIDTH = 20


def fraction_of(text: str) -> tuple[int, int] | None:
    """The first "done/total" in a progress text (objects, bytes, packages)."""
    match = _FRACTION.search(text)
    if not match or int(match.group(2)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))


def percent_of(text: str) -> int:
    """A percentage from the first "done/total" in a progress text; 0 without one."""
    fraction = fraction_of(text)
    return 0 if fraction is None else min(100, fraction[0] * 100 // fraction[1])


def progress_bar(text: str) -> str:
    """` [#####               ]  25%` for a text with a "done/total"; empty without."""
    if fraction_of(text) is None:
        return ""
    percent = percent_of(text)
    return f" [{'#' * (percent * BAR_WIDTH // 100):<{BAR_WIDTH}}] {percent:3d}%"


class Reporter:
    """Base reporter: prints steps and messages to stderr (stdout stays clean for --json)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._tasks: list[tuple[str, float]] = []
        self._start = time.monotonic()

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._start:6.1f}s"

    def message(self, text: str) -> None:
        """A line the user should see even with -q (results, warnings)."""
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self._elapsed()}] {text}", file=self.stream, flush=True)

    def task_begin(self, name: str) -> None:
        """Start a step; steps nest (a step may run sub-steps). A safe point: a
        cancelled transaction stops here (apt_ostree.cancel)."""
        check_cancelled()
        self._tasks.append((name, time.monotonic()))
        self.info(f"{name}...")

    def task_end(self, detail: str = "") -> None:
        if not self._tasks:
            return
        name, start = self._tasks.pop()
        suffix = f": {detail}" if detail else ""
        self.info(f"{name}: done in {time.monotonic() - start:.1f}s{suffix}")

    def progress(self, text: str) -> None:
        """A transient line (downloads, counters); overwritten on a terminal. A safe
        point, as task_begin."""
        check_cancelled()
        if self.quiet:
            return
        if self.stream.isatty():
            line = f"[{self._elapsed()}] {text}{progress_bar(text)}"
            print(f"\r\x1b[K{line}", end="", file=self.stream, flush=True)
        else:
            print(f"[{self._elapsed()}] {text}", file=self.stream, flush=True)

    def progress_done(self) -> None:
        if not self.quiet and self.stream.isatty():
            print(file=self.stream, flush=True)


class NullReporter(Reporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)

    def message(self, text: str) -> None:
        pass
