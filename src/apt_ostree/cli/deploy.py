"""`upgrade`, `deploy`, `rebase`, `remote`: moving to another commit."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.cli.db import format_diff_block
from apt_ostree.client.local import locked_sysroot, open_sysroot
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter

if TYPE_CHECKING:
    from apt_ostree.system.packages import PackageChange
    from apt_ostree.system.upgrade import Outcome


def register(sub: Any) -> None:
    p = sub.add_parser("upgrade", help="pull the origin's ref and deploy its new commit")
    p.add_argument("--os", dest="osname", metavar="OSNAME", help="operate on this OS")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true",
        help="only check whether an update is available (exit 77 if not)",
    )  # fmt: skip
    mode.add_argument(
        "--preview", action="store_true",
        help="show the package changes of the available update; deploy nothing",
    )  # fmt: skip
    p.add_argument(
        "--allow-downgrade", action="store_true",
        help="allow a new commit that is older than the deployed one",
    )  # fmt: skip
    _common(p)
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("deploy", help="deploy a given revision of the origin's ref")
    p.add_argument("revision", metavar="REVISION", help="CHECKSUM, version=VERSION, revision=CSUM")
    p.add_argument("--os", dest="osname", metavar="OSNAME", help="operate on this OS")
    p.add_argument(
        "--skip-branch-check", action="store_true",
        help="allow a commit that is not in the history of the origin's ref",
    )  # fmt: skip
    _common(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("rebase", help="switch to another ref (and remote)")
    p.add_argument("refspec", metavar="REFSPEC", nargs="?", help="REMOTE:REF, or REF")
    p.add_argument("revision", metavar="REVISION", nargs="?", help="a commit of the new ref")
    p.add_argument("--os", dest="osname", metavar="OSNAME", help="operate on this OS")
    p.add_argument("-b", "--branch", metavar="REF", help="rebase to this ref of the same remote")
    p.add_argument("-m", "--remote", metavar="NAME", help="rebase to this remote")
    p.add_argument(
        "--skip-purge", action="store_true", help="keep the previous ref in the repository"
    )
    _common(p)
    p.set_defaults(func=cmd_rebase)

    p = sub.add_parser("remote", help="add, list and delete remotes of the sysroot's repo")
    rsub = p.add_subparsers(dest="remote_command", metavar="COMMAND", required=True)
    r = rsub.add_parser("add", help="add a remote (GPG verification on by default)")
    r.add_argument("name", metavar="NAME")
    r.add_argument("url", metavar="URL")
    r.add_argument("--no-gpg-verify", action="store_true", help="do not verify commit signatures")
    r.add_argument(
        "--gpg-import", metavar="FILE", type=Path, action="append", default=[],
        help="trust the GPG public keys in FILE for this remote (repeatable)",
    )  # fmt: skip
    r.set_defaults(func=cmd_remote_add)
    r = rsub.add_parser("list", help="list the remotes")
    r.add_argument("-u", "--show-urls", action="store_true", help="show URLs too")
    r.set_defaults(func=cmd_remote_list)
    r = rsub.add_parser("delete", help="delete a remote")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(func=cmd_remote_delete)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--reboot", action="store_true", help="reboot after the change")
    p.add_argument(
        "--unchanged-exit-77", action="store_true", help="exit 77 if nothing was deployed"
    )
    p.add_argument(
        "--install", action="append", default=[], metavar="PKG",
        help="also layer this package (name or ./file.deb; repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--uninstall", action="append", default=[], metavar="PKG",
        help="also remove this layered package (repeatable)",
    )  # fmt: skip


def _package_change(args: argparse.Namespace) -> PackageChange | None:
    """The --install/--uninstall request, applied in the same transaction; None without."""
    from apt_ostree.cli.packages import is_local_deb
    from apt_ostree.system.packages import PackageChange

    if not args.install and not args.uninstall:
        return None
    return PackageChange(
        install=[p for p in args.install if not is_local_deb(p)],
        install_local=[Path(p).resolve() for p in args.install if is_local_deb(p)],
        uninstall=args.uninstall,
    )


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _check_reboot(args: argparse.Namespace) -> None:
    if getattr(args, "reboot", False):
        open_sysroot(args.sysroot).require_booted_for_reboot()


def _print_deployed(outcome: Outcome, reboot: bool) -> None:
    from apt_ostree.system.upgrade import version_of

    version = version_of(outcome.new)
    label = outcome.new.checksum + (f" (version {version})" if version else "")
    for line in format_diff_block(outcome.diff):
        print(line)
    if outcome.staged:
        print(f"Staged {label} as the next boot's deployment of {outcome.osname}")
        if not reboot:
            print('Run "systemctl reboot" to start a reboot')
    else:
        print(f"Deployed {label} as the default deployment of {outcome.osname}")


def _finish(args: argparse.Namespace, outcome: Outcome, unchanged_message: str) -> int:
    from apt_ostree.system.sysroot import reboot

    if not outcome.changed:
        print(unchanged_message)
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    _print_deployed(outcome, args.reboot)
    if args.reboot:
        reboot()
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from apt_ostree.system.upgrade import check_update, upgrade

    _check_reboot(args)
    change = _package_change(args)
    if change is not None and (args.check or args.preview):
        raise AptOstreeError("--install and --uninstall cannot be used with --check or --preview")
    reporter = Reporter(quiet=args.quiet)
    with locked_sysroot(args.sysroot) as sysroot:
        osname = args.osname or sysroot.default_osname()
        if args.check or args.preview:
            outcome = check_update(
                sysroot, osname, allow_downgrade=args.allow_downgrade, reporter=reporter
            )
        else:
            outcome = upgrade(
                sysroot, osname, allow_downgrade=args.allow_downgrade, reporter=reporter,
                change=change,
            )  # fmt: skip
    if args.check or args.preview:
        if not outcome.changed:
            print("No updates available.")
            return EXIT_UNCHANGED
        version = outcome.new.metadata.get("version")
        print("AvailableUpdate:")
        if version:
            print(f"{'Version':>15}: {version} ({_when(outcome.new.timestamp)})")
        print(f"{'Commit':>15}: {outcome.new.checksum}")
        print(f"{'Diff':>15}: {outcome.diff.summary()}")
        if args.preview:
            for line in format_diff_block(outcome.diff):
                print(line)
        return 0
    return _finish(args, outcome, "No upgrade available.")


def cmd_deploy(args: argparse.Namespace) -> int:
    from apt_ostree.system.upgrade import deploy_revision

    _check_reboot(args)
    reporter = Reporter(quiet=args.quiet)
    with locked_sysroot(args.sysroot) as sysroot:
        outcome = deploy_revision(
            sysroot,
            args.osname or sysroot.default_osname(),
            args.revision,
            skip_branch_check=args.skip_branch_check,
            reporter=reporter,
            change=_package_change(args),
        )
    return _finish(args, outcome, f"No change: {outcome.new.checksum} is already deployed.")


def cmd_rebase(args: argparse.Namespace) -> int:
    from apt_ostree.system.upgrade import current_state, rebase, rebase_target

    _check_reboot(args)
    reporter = Reporter(quiet=args.quiet)
    with locked_sysroot(args.sysroot) as sysroot:
        osname = args.osname or sysroot.default_osname()
        origin = current_state(sysroot, osname).origin
        refspec = rebase_target(origin, args.refspec, args.branch, args.remote)
        outcome = rebase(
            sysroot, osname, refspec, args.revision, skip_purge=args.skip_purge,
            reporter=reporter, change=_package_change(args),
        )  # fmt: skip
    print(f"Rebased from {origin.refspec} to {refspec}")
    return _finish(args, outcome, "No change.")


def cmd_remote_add(args: argparse.Namespace) -> int:
    from apt_ostree.system.remote import add_remote

    with locked_sysroot(args.sysroot) as sysroot:
        imported = add_remote(
            sysroot, args.name, args.url, gpg_verify=not args.no_gpg_verify,
            gpg_keys=args.gpg_import,
        )  # fmt: skip
    if not args.quiet:
        keys = f"; {imported} GPG key(s) imported" if args.gpg_import else ""
        verify = "off" if args.no_gpg_verify else "on"
        print(f'Added remote "{args.name}" ({args.url}), GPG verification {verify}{keys}')
    return 0


def cmd_remote_list(args: argparse.Namespace) -> int:
    from apt_ostree.system.remote import list_remotes

    for remote in list_remotes(open_sysroot(args.sysroot)):
        print(f"{remote.name:<14} {remote.url}" if args.show_urls else remote.name)
    return 0


def cmd_remote_delete(args: argparse.Namespace) -> int:
    from apt_ostree.system.remote import delete_remote

    with locked_sysroot(args.sysroot) as sysroot:
        delete_remote(sysroot, args.name)
    if not args.quiet:
        print(f'Deleted remote "{args.name}"')
    return 0
