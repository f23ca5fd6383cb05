"""`initramfs` and `initramfs-etc`: the initramfs built or extended on the machine
(docs/initramfs.md)."""

from __future__ import annotations

import argparse
from typing import Any

from apt_ostree.cli.finalization import add_lock_option, lock_options
from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Request, open_client
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter

REBOOT_HINT = 'Run "systemctl reboot" to start a reboot'


def _common(p: argparse.ArgumentParser) -> None:
    add_stateroot(p)
    p.add_argument(
        "-r", "--reboot", action="store_true", help="reboot afterwards (booted system only)"
    )
    add_lock_option(p)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "initramfs", help="enable or disable the initramfs built on the machine",
        description="With --enable, every new deployment's initramfs is built by dracut"
        " from the deployment's own tree (with each --arg given to dracut), this one and"
        " the ones upgrades make; --disable goes back to the image's initramfs. Without"
        " an option: show the current state.",
    )  # fmt: skip
    p.add_argument("--enable", action="store_true", help="build the initramfs on the machine")
    p.add_argument("--disable", action="store_true", help="use the image's initramfs again")
    p.add_argument(
        "--arg", action="append", default=[], metavar="ARG",
        help="an argument for dracut (repeatable; with --enable)",
    )  # fmt: skip
    _common(p)
    p.set_defaults(func=cmd_initramfs)

    e = sub.add_parser(
        "initramfs-etc", help="add files of /etc to the initramfs",
        description="Tracked files of /etc are copied, as they are at each new deployment,"
        " into a small archive that the bootloader loads after the initramfs; no dracut"
        " run. Without an option: list the tracked files.",
    )  # fmt: skip
    e.add_argument("--track", action="append", default=[], metavar="FILE",
                   help="track FILE (under /etc; repeatable)")  # fmt: skip
    e.add_argument("--untrack", action="append", default=[], metavar="FILE",
                   help="stop tracking FILE (repeatable)")  # fmt: skip
    e.add_argument("--untrack-all", action="store_true", help="stop tracking every file")
    e.add_argument(
        "--force-sync", action="store_true",
        help="make a new deployment with the tracked files as they are now",
    )  # fmt: skip
    e.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 if nothing changed")
    _common(e)
    e.set_defaults(func=cmd_initramfs_etc)


def _reporter(args: argparse.Namespace) -> Reporter:
    return Reporter(quiet=args.quiet)


def _current(client: Any, osname: str | None) -> dict[str, Any]:
    deployments = client.status()["deployments"]
    booted = next((d for d in deployments if d["booted"]), None)
    osname = osname or (booted or deployments[0])["osname"]
    for d in deployments:
        if d["osname"] == osname:
            return dict(d)
    raise AptOstreeError(f'no deployment of "{osname}"')


def _finish(client: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.reboot:
        client.reboot()
    elif result["booted"]:
        print(REBOOT_HINT)


def cmd_initramfs(args: argparse.Namespace) -> int:
    if args.enable and args.disable:
        raise AptOstreeError("--enable and --disable cannot be used together")
    if args.arg and not args.enable:
        raise AptOstreeError("--arg needs --enable")
    client = open_client(args.sysroot)
    if not (args.enable or args.disable):
        if args.reboot:
            raise AptOstreeError("--reboot needs --enable or --disable")
        d = _current(client, args.osname)
        state = "enabled" if d["regenerate-initramfs"] else "disabled"
        print(f"Initramfs regeneration: {state}")
        if d["initramfs-args"]:
            print(f"Initramfs args: {' '.join(d['initramfs-args'])}")
        return 0
    if args.reboot:
        client.require_booted_for_reboot()
    request = Request(
        "SetInitramfsState", [args.enable, args.arg], lock_options(args), osname=args.osname
    )
    result = client.transact(request, _reporter(args))
    if not result["changed"]:
        print("Initramfs regeneration unchanged")
        return 0
    print(f"Initramfs regeneration is now: {'enabled' if args.enable else 'disabled'}")
    _finish(client, args, result)
    return 0


def cmd_initramfs_etc(args: argparse.Namespace) -> int:
    client = open_client(args.sysroot)
    if not (args.track or args.untrack or args.untrack_all or args.force_sync):
        if args.reboot:
            raise AptOstreeError("--reboot needs a change")
        tracked = _current(client, args.osname)["initramfs-etc"]
        if tracked:
            print("Tracked files:")
            for path in tracked:
                print(f"  {path}")
        else:
            print("No tracked files.")
        return 0
    if args.reboot:
        client.require_booted_for_reboot()
    request = Request(
        "InitramfsEtc", [args.track, args.untrack, args.untrack_all, args.force_sync],
        lock_options(args), osname=args.osname,
    )  # fmt: skip
    result = client.transact(request, _reporter(args))
    if not result["changed"]:
        print("No changes.")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    for path in result["tracked"]:
        print(f"Tracked: {path}")
    for path in result["untracked"]:
        print(f"Untracked: {path}")
    _finish(client, args, result)
    return 0
