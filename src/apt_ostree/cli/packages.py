"""`install`, `uninstall`, `override`, `reset`, `search`, `refresh-md`: package layering."""

from __future__ import annotations

import argparse
from typing import Any

from apt_ostree.cli.finalization import add_lock_option, lock_options
from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Client, Request, open_client, open_local_packages
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter

REBOOT_HINT = 'Run "systemctl reboot" to start a reboot'


def _common(p: argparse.ArgumentParser, *, exit_77: bool = True) -> None:
    add_stateroot(p)
    p.add_argument("-n", "--dry-run", action="store_true", help="print the transaction only")
    p.add_argument("-y", "--assumeyes", action="store_true", help="(always non-interactive)")
    p.add_argument("-r", "--reboot", action="store_true", help="reboot afterwards (booted only)")
    p.add_argument("-C", "--cache-only", action="store_true", help="use only cached packages")
    p.add_argument("--download-only", action="store_true", help="download, change nothing")
    p.add_argument("--idempotent", action="store_true", help="no error if already done")
    p.add_argument("--allow-inactive", action="store_true",
                   help="allow requesting a package that is in the base")  # fmt: skip
    add_lock_option(p)
    if exit_77:  # rpm-ostree: install and uninstall, not override or reset
        p.add_argument(
            "--unchanged-exit-77", action="store_true", help="exit 77 if nothing changed"
        )


def _packages_option(p: argparse.ArgumentParser, flag: str, text: str) -> None:
    p.add_argument(flag, action="append", default=[], metavar="PKG", help=text)


def register(sub: Any) -> None:
    p = sub.add_parser("install", help="layer packages (names or ./file.deb)")
    p.add_argument("packages", nargs="+", metavar="PKG")
    _packages_option(p, "--uninstall", "also remove this layered package (repeatable)")
    p.add_argument(
        "-A", "--apply-live", action="store_true",
        help="also apply the new packages to the running system (apt-ostree apply-live)",
    )  # fmt: skip
    _common(p)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("uninstall", help="remove layered packages")
    p.add_argument("packages", nargs="*", metavar="PKG")
    p.add_argument("--all", action="store_true", help="remove every layered package")
    _packages_option(p, "--install", "also layer this package (repeatable)")
    _common(p)
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser("override", help="remove or replace base packages, or reset that")
    osub = p.add_subparsers(dest="override_command", metavar="COMMAND", required=True)
    r = osub.add_parser("remove", help="remove packages of the base commit")
    r.add_argument("packages", nargs="+", metavar="PKG")
    r.add_argument(
        "--replace", action="append", default=[], metavar="PKG",
        help="also replace a base package by a local .deb or from the APT sources (repeatable)",
    )  # fmt: skip
    _common(r, exit_77=False)
    r.set_defaults(func=cmd_override_remove)
    r = osub.add_parser(
        "replace", help="replace base packages (./FILE.deb, or NAME[=VERSION] from the sources)"
    )
    r.add_argument("packages", nargs="+", metavar="PKG")
    _packages_option(r, "--remove", "also remove this base package (repeatable)")
    _common(r, exit_77=False)
    r.set_defaults(func=cmd_override_replace)
    r = osub.add_parser("reset", help="undo overrides")
    r.add_argument("packages", nargs="*", metavar="PKG")
    r.add_argument("-a", "--all", action="store_true", help="undo every override")
    _common(r, exit_77=False)
    r.set_defaults(func=cmd_override_reset)

    p = sub.add_parser("reset", help="remove all layered packages, overrides and initramfs changes")
    p.add_argument("-l", "--overlays", action="store_true", help="only layered packages")
    p.add_argument("-o", "--overrides", action="store_true", help="only overrides")
    p.add_argument(
        "-i", "--initramfs", action="store_true",
        help="only initramfs regeneration and tracked /etc files",
    )  # fmt: skip
    _common(p, exit_77=False)
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("search", help="search the packages of the configured APT sources")
    p.add_argument("terms", nargs="+", metavar="TERM")
    add_stateroot(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("refresh-md", help="refresh the package indexes of the APT sources")
    p.add_argument("-f", "--force", action="store_true", help="drop the cached indexes first")
    add_stateroot(p)
    p.set_defaults(func=cmd_refresh_md)


def _run(args: argparse.Namespace, install: list[str], uninstall: list[str],
         options: dict[str, Any]) -> int:  # fmt: skip
    client = open_client(args.sysroot)
    if args.reboot:
        client.require_booted_for_reboot()
    for flag in ("dry_run", "download_only", "cache_only", "idempotent", "allow_inactive"):
        if getattr(args, flag):
            options[flag.replace("_", "-")] = True
    options.update(lock_options(args))
    request = Request("PkgChange", [install, uninstall], options, osname=args.osname)
    result = client.transact(request, Reporter(quiet=args.quiet))
    return _report(args, client, result)


def _report(args: argparse.Namespace, client: Client, result: dict[str, Any]) -> int:
    if not result["changed"]:
        print("No change.")
        return EXIT_UNCHANGED if getattr(args, "unchanged_exit_77", False) else 0
    layer = result["layer"]
    if layer is not None:
        added = [p for p in layer["install"] if p["replaces"] is None]
        replaced = [p for p in layer["install"] if p["replaces"] is not None]
        if added:
            print("Added:" if not args.dry_run else "Will add:")
            for p in added:
                print(f"  {p['name']} {p['version']} ({p['arch']})")
        if replaced:
            print("Replaced:" if not args.dry_run else "Will replace:")
            for p in replaced:
                print(f"  {p['name']} {p['replaces']} -> {p['version']}")
        if layer["remove"]:
            print("Removed:" if not args.dry_run else "Will remove:")
            for r in layer["remove"]:
                print(f"  {r['name']} {r['version']}")
        if layer["inactive"]:
            print(f"Inactive requests (already in the base): {', '.join(layer['inactive'])}")
        if args.dry_run:
            print(f"Download size: {_size(layer['download-size'])}")
            print("Exiting because of --dry-run")
            return 0
        if args.download_only:
            print("Exiting because of --download-only")
            return 0
        if layer["new-users"]:
            print(f"Users created: {', '.join(layer['new-users'])}")
    elif args.dry_run or args.download_only:
        print("Will remove every layered package and override")
        return 0
    if result.get("live"):
        from apt_ostree.cli.livefs import print_live

        print(f"Staged deployment {result['checksum']}")
        print_live(result["live"])
    elif result["staged"]:
        print(f"Staged deployment {result['checksum']}")
        if not args.reboot:
            print(REBOOT_HINT)
    else:
        print(f"Deployed {result['checksum']}")
    if args.reboot:
        client.reboot()
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000
    return f"{n} B"


def is_local_deb(arg: str) -> bool:
    """`./file.deb` (or any path) rather than a package name."""
    return arg.endswith(".deb") or "/" in arg


def cmd_install(args: argparse.Namespace) -> int:
    names = [p for p in args.packages if not is_local_deb(p)]
    local = [p for p in args.packages if is_local_deb(p)]
    options: dict[str, Any] = {}
    if args.apply_live:
        if args.reboot:
            raise AptOstreeError("--apply-live and --reboot cannot be used together")
        options["apply-live"] = True
    if local:
        options["install-local-packages"] = open_local_packages(local)
    return _run(args, names, list(args.uninstall), options)


def cmd_uninstall(args: argparse.Namespace) -> int:
    if not args.packages and not args.all:
        raise AptOstreeError("name packages to uninstall, or use --all")
    names = [p for p in args.install if not is_local_deb(p)]
    local = [p for p in args.install if is_local_deb(p)]
    options: dict[str, Any] = {"uninstall-all": True} if args.all else {}
    if local:
        options["install-local-packages"] = open_local_packages(local)
    return _run(args, names, list(args.packages), options)


def _replacements(packages: list[str]) -> dict[str, Any]:
    """Replacements of base packages: local .deb files, and NAME[=VERSION] from the sources."""
    options: dict[str, Any] = {}
    if names := [p for p in packages if not is_local_deb(p)]:
        options["override-replace"] = names
    if debs := [p for p in packages if is_local_deb(p)]:
        options["override-replace-local"] = open_local_packages(debs)
    return options


def cmd_override_remove(args: argparse.Namespace) -> int:
    options = _replacements(args.replace)
    return _run(args, [], [], {"override-remove": list(args.packages), **options})


def cmd_override_replace(args: argparse.Namespace) -> int:
    options = _replacements(args.packages)
    if args.remove:
        options["override-remove"] = list(args.remove)
    return _run(args, [], [], options)


def cmd_override_reset(args: argparse.Namespace) -> int:
    if not args.packages and not args.all:
        raise AptOstreeError("name packages whose override to reset, or use --all")
    options: dict[str, Any] = {"override-reset-all": True} if args.all else {}
    if args.packages:
        options["override-reset"] = list(args.packages)
    return _run(args, [], [], options)


def cmd_reset(args: argparse.Namespace) -> int:
    # As rpm-ostree: without a selection, everything.
    every = not (args.overlays or args.overrides or args.initramfs)
    options: dict[str, Any] = {}
    if every or args.overlays:
        options["reset-layering"] = True
    if every or args.overrides:
        options["override-reset-all"] = True
    if every or args.initramfs:
        options["reset-initramfs"] = True
    return _run(args, [], [], options)


def cmd_search(args: argparse.Namespace) -> int:
    reporter = Reporter(quiet=args.quiet)
    results = open_client(args.sysroot).search(args.osname, args.terms, reporter)
    if not results:
        print("No matches found.")
        return 0
    for name, _version, summary in results:
        print(f"{name} - {summary}" if summary else name)
    return 0


def cmd_refresh_md(args: argparse.Namespace) -> int:
    request = Request("RefreshMd", [], {"force": args.force}, osname=args.osname)
    open_client(args.sysroot).transact(request, Reporter(quiet=args.quiet))
    if not args.quiet:
        print("Package indexes are up to date.")
    return 0
