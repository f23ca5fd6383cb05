"""`rollback`, `kargs`, `cleanup`: changing the set of deployments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from apt_ostree.cli.db import format_diff_block
from apt_ostree.cli.finalization import add_lock_option, lock_options
from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Request, open_client
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter

REBOOT_HINT = 'Run "systemctl reboot" to start a reboot'


def register(sub: Any) -> None:
    rollback = sub.add_parser(
        "rollback", help="make the previous deployment the default",
        description="Reorder the deployments so that the rollback deployment boots next"
        " (booted: the deployment before the booted one, or the booted one if a pending"
        " deployment is on top; offline: the second deployment). Nothing is deleted.",
    )  # fmt: skip
    add_stateroot(rollback)
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
    add_stateroot(kargs)
    kargs.add_argument(
        "--unchanged-exit-77", action="store_true", help="exit 77 if nothing changed"
    )
    kargs.add_argument(
        "--reboot", action="store_true", help="reboot afterwards (booted system only)"
    )
    add_lock_option(kargs)
    kargs.add_argument(
        "--editor", action="store_true",
        help="edit the kernel arguments in $EDITOR (VISUAL, then EDITOR, then vi)",
    )  # fmt: skip
    kargs.set_defaults(func=cmd_kargs)

    cleanup = sub.add_parser(
        "cleanup", help="remove deployments, temporary files and cached data",
        description="Removed deployments' objects are pruned; every deployment's commit"
        " and every ref stays.",
    )  # fmt: skip
    add_stateroot(cleanup)
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

    cancel = sub.add_parser(
        "cancel", help="cancel the active transaction of apt-ostreed",
        description="Ask apt-ostreed to stop the transaction it runs (anyone's: another"
        " caller's needs polkit's org.aptostree.dev.cancel) and wait until it has. The"
        " transaction stops at its next safe point, before the new deployment is written;"
        " a transaction past that point finishes.",
    )  # fmt: skip
    cancel.set_defaults(func=cmd_cancel)

    reload = sub.add_parser(
        "reload", help="make apt-ostreed read its configuration and the sysroot again",
    )  # fmt: skip
    reload.set_defaults(func=cmd_reload)


def _size(n: int) -> str:
    """Decimal units, as ostree prints sizes (GLib's format_size, with a plain space)."""
    if n < 1000:
        return f"{n} bytes"
    value, units = n / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


# -- rollback -----------------------------------------------------------------------


def cmd_rollback(args: argparse.Namespace) -> int:
    client = open_client(args.sysroot)
    if args.reboot:
        client.require_booted_for_reboot()
    result = client.transact(Request("Rollback", [], {}, osname=args.osname), _reporter(args))
    new = result["new"]
    print(f"Moving '{new['checksum']}.{new['serial']}' to be first deployment")
    if not args.quiet and result["diff"] is not None:
        for line in format_diff_block(result["diff"]):
            print(line)
    if args.reboot:
        client.reboot()
    elif result["booted"]:
        print(REBOOT_HINT)
    return 0


def _reporter(args: argparse.Namespace) -> Reporter:
    return Reporter(quiet=args.quiet)


# -- kargs --------------------------------------------------------------------------


def cmd_kargs(args: argparse.Namespace) -> int:
    if args.import_proc_cmdline and args.deploy_index is not None:
        raise AptOstreeError("--import-proc-cmdline and --deploy-index cannot be used together")
    edits = (args.append, args.append_if_missing, args.delete, args.delete_if_present,
             args.replace)  # fmt: skip
    client = open_client(args.sysroot)
    if args.editor:
        if any(edits):
            raise AptOstreeError("--editor cannot be used with --append, --delete or --replace")
        current = client.kernel_args(
            args.osname, index=args.deploy_index, import_proc_cmdline=args.import_proc_cmdline
        )
        edits = edits_from_editor(current, edit_in_editor(current))
        args.append, args.delete = edits[0], edits[2]
    if not any(edits):
        if args.editor:
            print("Kernel arguments unchanged")
            return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
        if args.reboot:
            raise AptOstreeError("--reboot needs a change of the kernel arguments")
        print(client.kernel_args(
            args.osname, index=args.deploy_index, import_proc_cmdline=args.import_proc_cmdline
        ))  # fmt: skip
        return 0
    if args.reboot:
        client.require_booted_for_reboot()
    options: dict[str, Any] = {
        "append-if-missing": args.append_if_missing,
        "delete-if-present": args.delete_if_present,
        "replace": args.replace,
        "import-proc-cmdline": args.import_proc_cmdline,
        **lock_options(args),
    }
    if args.deploy_index is not None:
        options["deploy-index"] = args.deploy_index
    request = Request("KernelArgs", [args.append, args.delete], options, osname=args.osname)
    result = client.transact(request, _reporter(args))
    if not result["changed"]:
        print("Kernel arguments unchanged")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    print("Kernel arguments updated.")
    if args.reboot:
        client.reboot()
    elif result["booted"]:
        print(REBOOT_HINT)
    return 0


EDITOR_HELP = """
# Edit the kernel arguments above; lines starting with # are ignored.
# Arguments are separated by spaces; quote a value with spaces: foo="a b".
"""


def edit_in_editor(current: str) -> str:
    """The kernel arguments after the user edited `current` in $VISUAL/$EDITOR."""
    import os
    import shlex
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", prefix="apt-ostree-kargs-", suffix=".txt") as f:
        f.write(current + "\n" + EDITOR_HELP)
        f.flush()
        code = subprocess.call([*shlex.split(editor), f.name])
        if code != 0:
            raise AptOstreeError(
                f"the editor ({editor}) exited with status {code}; nothing changed"
            )
        # by path: editors (sed -i, vim's backupcopy) may replace the file
        text = Path(f.name).read_text()
    return " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def edits_from_editor(old: str, new: str) -> tuple[list[str], list[str], list[str], list[str],
                                                   list[str]]:  # fmt: skip
    """--append/--append-if-missing/--delete/--delete-if-present/--replace lists that turn
    `old` into `new`: each argument that is gone is deleted by its exact KEY=VALUE, each
    new one appended (after the ones kept)."""
    from apt_ostree.ostree.kargs import split_kargs

    before, after = split_kargs(old), split_kargs(new)
    deleted, appended = list(before), []
    for arg in after:
        if arg in deleted:
            deleted.remove(arg)
        else:
            appended.append(arg)
    return appended, [], deleted, [], []


# -- cleanup ------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    what = [w for w in ("pending", "rollback", "base", "repomd") if getattr(args, w)]
    if not what:
        raise AptOstreeError("nothing to clean up: give at least one of -p, -r, -b, -m")
    client = open_client(args.sysroot)
    result = client.transact(Request("Cleanup", [what], {}, osname=args.osname), _reporter(args))
    for d in result["removed"]:
        print(f"Removed {d['role']} deployment {d['osname']} {d['checksum']}.{d['serial']}")
    for d in result["kept-pinned"]:
        print(f"Kept pinned deployment {d['osname']} {d['checksum']}.{d['serial']}")
    if result["deployments-asked"] and not result["removed"]:
        print("Deployments unchanged.")
    if result["pruned"]:
        print(f"Freed: {_size(result['bytes-freed'])} ({result['objects-pruned']} objects)")
        if result["local-debs-removed"]:
            print(
                f"Removed {result['local-debs-removed']} stored local packages no deployment uses"
            )
    if result["cache-bytes-freed"] is not None:
        print(f"Freed cached metadata: {_size(result['cache-bytes-freed'])}")
    return 0


# -- cancel, reload -----------------------------------------------------------------


def cmd_cancel(args: argparse.Namespace) -> int:
    cancelled = open_client(args.sysroot).cancel()
    if cancelled is None:
        print("No active transaction.")
    elif not args.quiet:
        print(f"Cancelled: {cancelled}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    open_client(args.sysroot).reload()
    return 0
