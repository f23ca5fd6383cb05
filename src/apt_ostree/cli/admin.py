"""`rollback`, `kargs`, `cleanup`: changing the set of deployments."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from apt_ostree.client.local import locked_sysroot, open_sysroot
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError

if TYPE_CHECKING:
    from apt_ostree.ostree.sysroot import DeploymentInfo
    from apt_ostree.system.sysroot import Sysroot

REBOOT_HINT = 'Run "systemctl reboot" to start a reboot'


def register(sub: Any) -> None:
    rollback = sub.add_parser(
        "rollback", help="make the previous deployment the default",
        description="Reorder the deployments so that the rollback deployment boots next"
        " (booted: the deployment before the booted one, or the booted one if a pending"
        " deployment is on top; offline: the second deployment). Nothing is deleted.",
    )  # fmt: skip
    rollback.add_argument(
        "-r", "--reboot", action="store_true", help="reboot afterwards (booted system only)"
    )
    rollback.set_defaults(func=cmd_rollback)

    kargs = sub.add_parser(
        "kargs", help="show or change the kernel arguments",
        description="Without options, print the kernel arguments of the default deployment"
        " (the pending one if any, else the booted one). Each change makes a new deployment"
        " of the same commit. An option's value may hold several arguments separated by"
        ' spaces; quote a value with spaces as the kernel does: \'foo="a b"\'.',
    )  # fmt: skip
    for option, metavar, text in (
        ("--append", "KEY=VALUE", "append an argument (keys may repeat, e.g. console=)"),
        ("--append-if-missing", "KEY=VALUE", "like --append, nothing if KEY is there"),
        ("--delete", "KEY[=VALUE]", "delete an argument (KEY=VALUE if KEY has several values)"),
        ("--delete-if-present", "KEY[=VALUE]", "like --delete, nothing if it is not there"),
        ("--replace", "KEY=VALUE|KEY=OLD=NEW", "replace the value of an argument"),
    ):
        kargs.add_argument(option, action="append", default=[], metavar=metavar, help=text)
    kargs.add_argument(
        "--deploy-index", type=int, metavar="INDEX",
        help="use the kernel arguments and commit of deployment INDEX (0 is the first)",
    )  # fmt: skip
    kargs.add_argument(
        "--import-proc-cmdline", action="store_true",
        help="start from /proc/cmdline (the booted deployment) instead of the boot entry",
    )  # fmt: skip
    kargs.add_argument(
        "--unchanged-exit-77", action="store_true", help="exit 77 if nothing changed"
    )
    kargs.add_argument(
        "--reboot", action="store_true", help="reboot afterwards (booted system only)"
    )
    kargs.set_defaults(func=cmd_kargs)

    cleanup = sub.add_parser(
        "cleanup", help="remove deployments, temporary files and cached data",
        description="Removed deployments' objects are pruned; every deployment's commit"
        " and every ref stays.",
    )  # fmt: skip
    cleanup.add_argument(
        "-p", "--pending", action="store_true", help="remove the pending (staged) deployment"
    )
    cleanup.add_argument(
        "-r", "--rollback", action="store_true", help="remove the rollback deployments"
    )
    cleanup.add_argument(
        "-b", "--base", action="store_true",
        help="remove temporary files and prune objects no deployment or ref uses",
    )  # fmt: skip
    cleanup.add_argument(
        "-m", "--repomd", action="store_true", help="remove cached APT metadata and packages"
    )
    cleanup.set_defaults(func=cmd_cleanup)


def _size(n: int) -> str:
    """Decimal units, as ostree prints sizes (GLib's format_size, with a plain space)."""
    if n < 1000:
        return f"{n} bytes"
    value, units = n / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def _package_diff(sysroot: Sysroot, old: DeploymentInfo, new: DeploymentInfo) -> list[str]:
    """The package changes between two deployments; empty if a commit has no package list."""
    from apt_ostree.cli.db import format_diff_block
    from apt_ostree.system.db import DbError, diff_commits

    try:
        return format_diff_block(diff_commits(sysroot.repo, old.checksum, new.checksum))
    except DbError:
        return []


# -- rollback -----------------------------------------------------------------------


def cmd_rollback(args: argparse.Namespace) -> int:
    from apt_ostree.system.rollback import rollback
    from apt_ostree.system.sysroot import reboot

    with locked_sysroot(args.sysroot) as sysroot:
        if args.reboot:
            sysroot.require_booted_for_reboot()
        result = rollback(sysroot)
        new = result.new_default
        print(f"Moving '{new.checksum}.{new.serial}' to be first deployment")
        if not args.quiet:
            for line in _package_diff(sysroot, result.current, new):
                print(line)
    if args.reboot:
        reboot()
    elif sysroot.booted:
        print(REBOOT_HINT)
    return 0


# -- kargs --------------------------------------------------------------------------


def cmd_kargs(args: argparse.Namespace) -> int:
    from apt_ostree.system.kargs import KargsEdit, change_kargs, show_kargs
    from apt_ostree.system.sysroot import reboot

    if args.import_proc_cmdline and args.deploy_index is not None:
        raise AptOstreeError("--import-proc-cmdline and --deploy-index cannot be used together")
    edit = KargsEdit(
        append=args.append, append_if_missing=args.append_if_missing, delete=args.delete,
        delete_if_present=args.delete_if_present, replace=args.replace,
    )  # fmt: skip
    if edit.empty:
        if args.reboot:
            raise AptOstreeError("--reboot needs a change of the kernel arguments")
        sysroot = open_sysroot(args.sysroot)
        kargs = show_kargs(
            sysroot, index=args.deploy_index, import_proc_cmdline=args.import_proc_cmdline
        )
        print(kargs)
        return 0
    edit.validate()
    with locked_sysroot(args.sysroot) as sysroot:
        if args.reboot:
            sysroot.require_booted_for_reboot()
        result = change_kargs(
            sysroot, edit, index=args.deploy_index, import_proc_cmdline=args.import_proc_cmdline
        )
    if not result.changed:
        print("Kernel arguments unchanged")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    print("Kernel arguments updated.")
    if args.reboot:
        reboot()
    elif sysroot.booted:
        print(REBOOT_HINT)
    return 0


# -- cleanup ------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    from apt_ostree.system.cleanup import CleanupError, CleanupRequest, cleanup

    req = CleanupRequest(
        pending=args.pending, rollback=args.rollback, base=args.base, repomd=args.repomd
    )
    if req.empty:
        raise CleanupError("nothing to clean up: give at least one of -p, -r, -b, -m")
    with locked_sysroot(args.sysroot) as sysroot:
        result = cleanup(sysroot, req)
    for role, d in result.removed:
        print(f"Removed {role} deployment {d.osname} {d.checksum}.{d.serial}")
    for d in result.kept_pinned:
        print(f"Kept pinned deployment {d.osname} {d.checksum}.{d.serial}")
    if (req.pending or req.rollback) and not result.removed:
        print("Deployments unchanged.")
    if result.pruned:
        print(f"Freed: {_size(result.bytes_freed)} ({result.objects_pruned} objects)")
        if result.local_debs_removed:
            print(f"Removed {result.local_debs_removed} stored local packages no deployment uses")
    if result.cache_bytes_freed is not None:
        print(f"Freed cached metadata: {_size(result.cache_bytes_freed)}")
    return 0
