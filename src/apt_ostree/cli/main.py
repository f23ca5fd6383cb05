"""`apt-ostree`: the entry point and the dispatch to subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from apt_ostree import __version__
from apt_ostree.errors import AptOstreeError, CommandError

# Which module of apt_ostree.cli registers each command. Only the module of the
# command being run is imported: `status` must start fast.
COMMANDS = {
    "status": "status",
    "upgrade": "deploy",
    "deploy": "deploy",
    "rebase": "deploy",
    "remote": "deploy",
    "rollback": "admin",
    "kargs": "admin",
    "cleanup": "admin",
    "cancel": "admin",
    "reload": "admin",
    "finalize-deployment": "finalization",
    "db": "db",
    "compose": "compose",
    "install": "packages",
    "uninstall": "packages",
    "override": "packages",
    "reset": "packages",
    "search": "packages",
    "refresh-md": "packages",
}
GLOBAL_OPTIONS_WITH_VALUE = ("--sysroot",)


def _command_of(argv: Sequence[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apt-ostree",
        description="Atomic, image-based Debian systems with package layering.",
    )
    parser.add_argument("--version", action="version", version=f"apt-ostree {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    parser.add_argument(
        "--sysroot", type=Path, default=None, metavar="PATH",
        help="work on the OSTree sysroot at PATH, in-process"
        " (default: the booted system, through apt-ostreed)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = _command_of(sys.argv[1:] if argv is None else argv)
    wanted = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in wanted:
        importlib.import_module(f"apt_ostree.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AptOstreeError as e:
        message = str(e)
        print(f"error: {message}", file=sys.stderr)
        if isinstance(e, CommandError) and e.output and e.output.strip() not in message:
            print(e.output.rstrip(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
