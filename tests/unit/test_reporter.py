"""The reporter: progress as a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from apt_ostree.reporter import Reporter, percent_of


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        Reporter(stream).progress("Receiving objects: 5/20 (1.2 MiB)")
    assert tty.getvalue().startswith("\r\x1b[K[")
    assert tty.getvalue().endswith("Receiving objects: 5/20 (1.2 MiB) [#####               ]  25%")
    assert pipe.getvalue().endswith("] Receiving objects: 5/20 (1.2 MiB)\n")


def test_a_progress_without_a_total_has_no_bar() -> None:
    tty = Terminal()
    Reporter(tty).progress("Receiving metadata: 12 scanned (3 KiB)")
    assert tty.getvalue().endswith("Receiving metadata: 12 scanned (3 KiB)")
    assert percent_of("Receiving metadata: 12 scanned") == 0
    assert percent_of("Downloading 3 / 4") == 75
