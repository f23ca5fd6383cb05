"""`apt-ostree`: the entry point and the dispatch to subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from apt_ostree.cli.options import EXIT_USAGE, Parser, add_global_options, walk
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
    "initramfs": "initramfs",
    "initramfs-etc": "initramfs",
    "db": "db",
    "compose": "compose",
    "install": "packages",
    "uninstall": "packages",
    "override": "packages",
    "reset": "packages",
    "search": "packages",
    "refresh-md": "packages",
    "usroverlay": "usroverlay",
    "apply-live": "livefs",
    "ex": "ex",
}
# rpm-ostree's hidden aliases (legacy names and dnf's), not listed in --help.
ALIASES = {
    "update": "upgrade",
    "pkg-add": "install",
    "pkg-remove": "uninstall",
    "remove": "uninstall",
    "makecache": "refresh-md",
    "unlock": "usroverlay",
}
GLOBAL_OPTIONS_WITH_VALUE = ("--sysroot",)


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the command is in `argv`: its first argument that is not an option."""
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return i
    return None


def resolve_aliases(argv: Sequence[str]) -> list[str]:
    """`argv` with a hidden alias of the command replaced by the command's name."""
    out = list(argv)
    i = _command_index(out)
    if i is not None and out[i] in ALIASES:
        out[i] = ALIASES[out[i]]
    return out


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the module of its command is loaded."""
    parser = Parser(
        prog="apt-ostree",
        description="Atomic, image-based Debian systems with package layering.",
    )
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    i = _command_index(argv) if argv is not None else None
    command = argv[i] if argv is not None and i is not None else None
    wanted = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in wanted:
        importlib.import_module(f"apt_ostree.cli.{name}").register(sub)
    for _, child in walk(parser):
        add_global_options(child, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = resolve_aliases(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # --help, --version, or a bad command line (exit 1)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
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
