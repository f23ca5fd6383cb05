"""Options and parser behaviour that every command shares, as rpm-ostree has them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from apt_ostree import __version__

# rpm-ostree exits 1 on a bad command line (GOption), not argparse's 2.
EXIT_USAGE = 1


class Parser(argparse.ArgumentParser):
    """argparse with rpm-ostree's exit code for a bad command line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own imports shutil (and with it bz2 and lzma) for the terminal's
        # width at every add_argument: `status` would pay for it on every run.
        formatter: argparse.HelpFormatter = self.formatter_class(
            prog=self.prog,
            width=_columns() - 2,  # type: ignore[call-arg]
        )
        return formatter


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() finds it, without shutil."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def add_global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--version, -q/--quiet and --sysroot, accepted before and after the command
    (rpm-ostree adds them to every command's option table). Below the top level
    their default is SUPPRESS, so that an option given before the command is kept."""
    quiet_default: Any = False if top else argparse.SUPPRESS
    sysroot_default: Any = None if top else argparse.SUPPRESS
    p.add_argument("--version", action="version", version=f"apt-ostree {__version__}",
                   help="print the version and exit")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", default=quiet_default,
                   help="print only results and errors")  # fmt: skip
    p.add_argument(
        "--sysroot", type=Path, metavar="SYSROOT", default=sysroot_default,
        help="work on the OSTree sysroot at SYSROOT, in-process"
        " (default: the booted system, through apt-ostreed)",
    )  # fmt: skip


def add_stateroot(p: argparse.ArgumentParser) -> None:
    """--stateroot, with rpm-ostree's older --os as its alias."""
    p.add_argument("--stateroot", "--os", dest="osname", metavar="STATEROOT",
                   help="operate on this stateroot (osname)")  # fmt: skip


def subparsers(p: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The (name, parser) of each command directly below `p`, in order."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def walk(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser below `p` (depth first) with its command path, e.g. ("override", "reset")."""
    for name, child in subparsers(p):
        yield (*path, name), child
        yield from walk(child, (*path, name))
