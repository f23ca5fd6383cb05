"""Progress and messages: one reporter that the CLI renders on a terminal and
the daemon turns into D-Bus signals."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
        """Start a step; steps nest (a step may run sub-steps)."""
        self._tasks.append((name, time.monotonic()))
        self.info(f"{name}...")

    def task_end(self, detail: str = "") -> None:
        if not self._tasks:
            return
        name, start = self._tasks.pop()
        suffix = f": {detail}" if detail else ""
        self.info(f"{name}: done in {time.monotonic() - start:.1f}s{suffix}")

    def progress(self, text: str) -> None:
        """A transient line (downloads, counters); overwritten on a terminal."""
        if self.quiet:
            return
        if self.stream.isatty():
            print(f"\r\x1b[K[{self._elapsed()}] {text}", end="", file=self.stream, flush=True)
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
