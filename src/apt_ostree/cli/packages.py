"""`install`, `uninstall`, `override`, `reset`, `search`, `refresh-md`: package layering."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.client.local import locked_sysroot, open_sysroot
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter

if TYPE_CHECKING:
    from apt_ostree.system.packages import PackageChange, PackageOutcome

REBOOT_HINT = 'Run "systemctl reboot" to start a reboot'


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--os", dest="osname", help="operate on this osname")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the transaction only")
    p.add_argument("-y", "--assumeyes", action="store_true", help="(always non-interactive)")
    p.add_argument("-r", "--reboot", action="store_true", help="reboot afterwards (booted only)")
    p.add_argument("-C", "--cache-only", action="store_true", help="use only cached packages")
    p.add_argument("--download-only", action="store_true", help="download, change nothing")
    p.add_argument("--idempotent", action="store_true", help="no error if already done")
    p.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 if nothing changed")


def register(sub: Any) -> None:
    p = sub.add_parser("install", help="layer packages (names or ./file.deb)")
    p.add_argument("packages", nargs="+", metavar="PKG")
    p.add_argument("--allow-inactive", action="store_true",
                   help="allow requesting a package that is in the base")  # fmt: skip
    _common(p)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("uninstall", help="remove layered packages")
    p.add_argument("packages", nargs="*", metavar="PKG")
    p.add_argument("--all", action="store_true", help="remove every layered package")
    _common(p)
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser("override", help="remove or replace base packages, or reset that")
    osub = p.add_subparsers(dest="override_command", metavar="COMMAND", required=True)
    r = osub.add_parser("remove", help="remove packages of the base commit")
    r.add_argument("packages", nargs="+", metavar="PKG")
    _common(r)
    r.set_defaults(func=cmd_override_remove)
    r = osub.add_parser("replace", help="replace base packages by local .deb files")
    r.add_argument("packages", nargs="+", metavar="./FILE.deb")
    _common(r)
    r.set_defaults(func=cmd_override_replace)
    r = osub.add_parser("reset", help="undo overrides")
    r.add_argument("packages", nargs="*", metavar="PKG")
    r.add_argument("--all", action="store_true", help="undo every override")
    _common(r)
    r.set_defaults(func=cmd_override_reset)

    p = sub.add_parser("reset", help="remove all layered packages and overrides")
    p.add_argument("-l", "--overlays", action="store_true", help="only layered packages")
    p.add_argument("-o", "--overrides", action="store_true", help="only overrides")
    _common(p)
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("search", help="search the packages of the configured APT sources")
    p.add_argument("terms", nargs="+", metavar="TERM")
    p.add_argument("--os", dest="osname", help="operate on this osname")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("refresh-md", help="refresh the package indexes of the APT sources")
    p.add_argument("-f", "--force", action="store_true", help="drop the cached indexes first")
    p.add_argument("--os", dest="osname", help="operate on this osname")
    p.set_defaults(func=cmd_refresh_md)


def _run(args: argparse.Namespace, change: PackageChange) -> int:
    from apt_ostree.system.packages import change_packages

    if args.reboot:
        open_sysroot(args.sysroot).require_booted_for_reboot()
    reporter = Reporter(quiet=args.quiet)
    with locked_sysroot(args.sysroot) as sysroot:
        outcome = change_packages(
            sysroot,
            args.osname or sysroot.default_osname(),
            change,
            dry_run=args.dry_run,
            download_only=args.download_only,
            cache_only=args.cache_only,
            reporter=reporter,
        )
    return _report(args, outcome)


def _report(args: argparse.Namespace, outcome: PackageOutcome) -> int:
    if not outcome.changed:
        print("No change.")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    if outcome.layer is not None:
        plan = outcome.layer.plan
        added = [p for p in plan.install if p.replaces is None]
        replaced = [p for p in plan.install if p.replaces is not None]
        if added:
            print("Added:" if not args.dry_run else "Will add:")
            for p in added:
                print(f"  {p.name} {p.version} ({p.arch})")
        if replaced:
            print("Replaced:" if not args.dry_run else "Will replace:")
            for p in replaced:
                print(f"  {p.name} {p.replaces} -> {p.version}")
        if plan.remove:
            print("Removed:" if not args.dry_run else "Will remove:")
            for r in plan.remove:
                print(f"  {r.name} {r.version}")
        if plan.inactive:
            print(f"Inactive requests (already in the base): {', '.join(plan.inactive)}")
        if args.dry_run:
            print(f"Download size: {_size(plan.download_size)}")
            print("Exiting because of --dry-run")
            return 0
        if args.download_only:
            print("Exiting because of --download-only")
            return 0
        if outcome.layer.new_users:
            print(f"Users created: {', '.join(outcome.layer.new_users)}")
    elif args.dry_run or args.download_only:
        print("Will remove every layered package and override")
        return 0
    if outcome.staged:
        print(f"Staged deployment {outcome.checksum}")
        if not args.reboot:
            print(REBOOT_HINT)
    else:
        print(f"Deployed {outcome.checksum}")
    if args.reboot:
        from apt_ostree.system.sysroot import reboot

        reboot()
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n} B"


def is_local_deb(arg: str) -> bool:
    """`./file.deb` (or any path) rather than a package name."""
    return arg.endswith(".deb") or "/" in arg


def cmd_install(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    names = [p for p in args.packages if not is_local_deb(p)]
    change = PackageChange(
        install=names,
        install_local=[Path(p).resolve() for p in args.packages if is_local_deb(p)],
        allow_inactive=args.allow_inactive,
        idempotent=args.idempotent,
    )
    return _run(args, change)


def cmd_uninstall(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    if not args.packages and not args.all:
        raise AptOstreeError("name packages to uninstall, or use --all")
    return _run(args, PackageChange(uninstall=args.packages, uninstall_all=args.all,
                                    idempotent=args.idempotent))  # fmt: skip


def cmd_override_remove(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    return _run(args, PackageChange(remove_base=args.packages, idempotent=args.idempotent))


def cmd_override_replace(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    names = [p for p in args.packages if not is_local_deb(p)]
    if names:
        raise AptOstreeError(
            f'override replace takes local .deb files, not package names: "{names[0]}"'
        )
    return _run(args, PackageChange(replace_local=[Path(p).resolve() for p in args.packages]))


def cmd_override_reset(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    if not args.packages and not args.all:
        raise AptOstreeError("name packages whose override to reset, or use --all")
    return _run(args, PackageChange(reset_removals=args.packages,
                                    reset_all_overrides=args.all))  # fmt: skip


def cmd_reset(args: argparse.Namespace) -> int:
    from apt_ostree.system.packages import PackageChange

    both = not args.overlays and not args.overrides
    change = PackageChange(reset_layering=both or args.overlays,
                           reset_all_overrides=both or args.overrides)  # fmt: skip
    return _run(args, change)


def cmd_search(args: argparse.Namespace) -> int:
    from apt_ostree.system.search import search

    sysroot = open_sysroot(args.sysroot)
    reporter = Reporter(quiet=args.quiet)
    results = search(sysroot, args.osname or sysroot.default_osname(), args.terms,
                     reporter=reporter)  # fmt: skip
    if not results:
        print("No matches found.")
        return 0
    for result in results:
        print(f"{result.name} - {result.summary}" if result.summary else result.name)
    return 0


def cmd_refresh_md(args: argparse.Namespace) -> int:
    from apt_ostree.system.search import refresh

    reporter = Reporter(quiet=args.quiet)
    with locked_sysroot(args.sysroot) as sysroot:
        refresh(sysroot, args.osname or sysroot.default_osname(), force=args.force,
                reporter=reporter)  # fmt: skip
    if not args.quiet:
        print("Package indexes are up to date.")
    return 0
