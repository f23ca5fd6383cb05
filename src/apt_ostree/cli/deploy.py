"""`upgrade`, `deploy`, `rebase`, `remote`: moving to another commit."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from apt_ostree.cli.db import diff_summary, format_diff_block
from apt_ostree.cli.finalization import add_lock_option, lock_options
from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Client, Request, open_client, open_local_packages
from apt_ostree.errors import EXIT_UNCHANGED, AptOstreeError
from apt_ostree.reporter import Reporter


def register(sub: Any) -> None:
    p = sub.add_parser("upgrade", help="pull the origin's ref and deploy its new commit")
    add_stateroot(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true",
        help="only check whether an update is available (exit 77 if not)",
    )  # fmt: skip
    mode.add_argument(
        "--preview", action="store_true",
        help="show the package changes of the available update; deploy nothing",
    )  # fmt: skip
    mode.add_argument(
        "--trigger-automatic-update-policy", action="store_true",
        help="do what apt-ostreed's AutomaticUpdatePolicy says: nothing, check or stage"
        " (what apt-ostreed-automatic.service runs)",
    )  # fmt: skip
    p.add_argument(
        "--allow-downgrade", action="store_true",
        help="allow a new commit that is older than the deployed one",
    )  # fmt: skip
    _common(p)
    # rpm-ostree's legacy spelling of --unchanged-exit-77
    p.add_argument("--upgrade-unchanged-exit-77", action="store_true", dest="unchanged_exit_77",
                   help=argparse.SUPPRESS)  # fmt: skip
    _bypass_driver(p)
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("deploy", help="deploy a given revision of the origin's ref")
    p.add_argument("revision", metavar="REVISION", nargs="?",
                   help="CHECKSUM, version=VERSION, revision=CSUM")  # fmt: skip
    add_stateroot(p)
    p.add_argument(
        "--skip-branch-check", action="store_true",
        help="allow a commit that is not in the history of the origin's ref",
    )  # fmt: skip
    p.add_argument(
        "--preview", action="store_true",
        help="show the package changes of REVISION; deploy nothing (exit 77 if none)",
    )  # fmt: skip
    _disallow_downgrade(p)
    _common(p)
    p.add_argument(
        "--register-driver", metavar="DRIVERNAME",
        help="register the caller as the update driver of the system (see docs/upgrade.md)",
    )  # fmt: skip
    _bypass_driver(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("rebase", help="switch to another ref (and remote)")
    p.add_argument(
        "refspec", metavar="REFSPEC", nargs="?",
        help="REMOTE:REF, REF, or a container image reference (ostree-unverified-registry:IMAGE,"
        " ostree-unverified-image:oci:/PATH[:TAG], ...)",
    )  # fmt: skip
    p.add_argument("revision", metavar="REVISION", nargs="?", help="a commit of the new ref")
    add_stateroot(p)
    p.add_argument("-b", "--branch", metavar="REF", help="rebase to this ref of the same remote")
    p.add_argument("-m", "--remote", metavar="NAME", help="rebase to this remote")
    p.add_argument(
        "--skip-purge", action="store_true", help="keep the previous ref in the repository"
    )
    p.add_argument(
        "--custom-origin-url", metavar="URL",
        help="where the new ref comes from, for status (with a description)",
    )  # fmt: skip
    p.add_argument("--custom-origin-description", metavar="TEXT",
                   help="a description of --custom-origin-url, for status")  # fmt: skip
    _disallow_downgrade(p)
    _common(p, exit_77=False)
    _bypass_driver(p)
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


def _disallow_downgrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--disallow-downgrade", action="store_true",
                   help="refuse a commit older than the deployed one")  # fmt: skip


def _bypass_driver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bypass-driver", action="store_true",
                   help="go ahead although an update driver is registered")  # fmt: skip


def _common(p: argparse.ArgumentParser, *, exit_77: bool = True) -> None:
    p.add_argument("-r", "--reboot", action="store_true", help="reboot after the change")
    p.add_argument("-C", "--cache-only", action="store_true",
                   help="fetch nothing: use the commit and packages already here")  # fmt: skip
    p.add_argument("--download-only", action="store_true",
                   help="fetch the commit and packages; deploy nothing")  # fmt: skip
    if exit_77:  # rpm-ostree: upgrade and deploy, not rebase
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
    add_lock_option(p)


def _modifiers(args: argparse.Namespace) -> dict[str, Any]:
    """The --install/--uninstall options, applied in the same transaction."""
    from apt_ostree.cli.packages import is_local_deb

    options: dict[str, Any] = {
        flag.replace("_", "-"): True
        for flag in ("cache_only", "download_only")
        if getattr(args, flag)
    }
    names = [p for p in args.install if not is_local_deb(p)]
    local = [p for p in args.install if is_local_deb(p)]
    if names:
        options["install-packages"] = names
    if local:
        options["install-local-packages"] = open_local_packages(local)
    if args.uninstall:
        options["uninstall-packages"] = list(args.uninstall)
    return {**options, **lock_options(args)}


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _label(new: dict[str, Any]) -> str:
    return new["checksum"] + (f" (version {new['version']})" if new["version"] else "")


def _print_deployed(result: dict[str, Any], reboot: bool) -> None:
    label = _label(result["new"])
    for line in format_diff_block(result["diff"]):
        print(line)
    if result["staged"]:
        print(f"Staged {label} as the next boot's deployment of {result['osname']}")
        if not reboot:
            print('Run "systemctl reboot" to start a reboot')
    else:
        print(f"Deployed {label} as the default deployment of {result['osname']}")


def _finish(
    args: argparse.Namespace, client: Client, result: dict[str, Any], unchanged_message: str
) -> int:
    if not result["changed"]:
        print(unchanged_message)
        return EXIT_UNCHANGED if getattr(args, "unchanged_exit_77", False) else 0
    if not result["deployed"]:
        print(f"Downloaded {_label(result['new'])}; nothing deployed (--download-only)")
        return 0
    _print_deployed(result, args.reboot)
    if args.reboot:
        client.reboot()
    return 0


def _open(args: argparse.Namespace) -> Client:
    client = open_client(args.sysroot)
    if getattr(args, "reboot", False):
        client.require_booted_for_reboot()
    if not getattr(args, "bypass_driver", True) and client.booted:
        driver = client.status().get("update-driver")
        if driver:
            name, unit = driver["driver-name"], driver["driver-sd-unit"]
            raise AptOstreeError(
                f"updates and deployments are driven by {name} ({unit or 'no unit'});"
                f" use --bypass-driver to go ahead anyway"
            )
    return client


def caller_unit(cgroup: Path = Path("/proc/self/cgroup")) -> str:
    """The systemd unit this process runs in (the driver's), from its cgroup path."""
    try:
        text = cgroup.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        for part in reversed(line.rpartition(":")[2].split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return ""


def _register_driver(args: argparse.Namespace) -> int:
    """`deploy --register-driver NAME`: as rpm-ostree, without a REVISION it only
    registers the caller (and its systemd unit) as the update driver."""
    if args.revision or args.install or args.uninstall or args.preview:
        raise AptOstreeError("--register-driver takes no REVISION, --install, --uninstall"
                             " or --preview")  # fmt: skip
    client = open_client(args.sysroot)
    options = {"register-driver": args.register_driver, "driver-unit": caller_unit()}
    client.transact(Request("RegisterDriver", [], options, osname=args.osname),
                    Reporter(quiet=args.quiet))  # fmt: skip
    if not args.quiet:
        print(f"Registered {args.register_driver} as the update driver")
    return 0


def _print_available(result: dict[str, Any], preview: bool) -> None:
    new = result["new"]
    print("AvailableUpdate:")
    if new["version"]:
        print(f"{'Version':>15}: {new['version']} ({_when(new['timestamp'])})")
    print(f"{'Commit':>15}: {new['checksum']}")
    print(f"{'Diff':>15}: {diff_summary(result['diff'])}")
    if preview:
        for line in format_diff_block(result["diff"]):
            print(line)


def _trigger_automatic_update(args: argparse.Namespace) -> int:
    if args.install or args.uninstall or args.allow_downgrade:
        raise AptOstreeError(
            "--trigger-automatic-update-policy takes no --install, --uninstall or"
            " --allow-downgrade: the policy says what to do"
        )
    client = _open(args)
    request = Request("AutomaticUpdateTrigger", [], {}, osname=args.osname)
    result = client.transact(request, Reporter(quiet=args.quiet))
    if result["policy"] == "none":
        print("Automatic updates are not enabled; exiting...")
        return 0
    if result["policy"] == "check":
        if result["changed"]:
            _print_available(result, preview=False)
        else:
            print("No updates available.")
        return 0
    return _finish(args, client, result, "No upgrade available.")


def cmd_upgrade(args: argparse.Namespace) -> int:
    if args.trigger_automatic_update_policy:
        return _trigger_automatic_update(args)
    check = args.check or args.preview
    if check and (args.install or args.uninstall):
        raise AptOstreeError("--install and --uninstall cannot be used with --check or --preview")
    client = _open(args)
    options: dict[str, Any] = {"allow-downgrade": args.allow_downgrade, **_modifiers(args)}
    if check:
        options["check"] = True
    request = Request("Upgrade", [], options, osname=args.osname)
    result = client.transact(request, Reporter(quiet=args.quiet))
    if check:
        if not result["changed"]:
            print("No updates available.")
            return EXIT_UNCHANGED
        _print_available(result, args.preview)
        return 0
    return _finish(args, client, result, "No upgrade available.")


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.register_driver is not None:
        return _register_driver(args)
    if not args.revision:
        raise AptOstreeError("deploy needs a REVISION")
    client = _open(args)
    options: dict[str, Any] = {
        "skip-branch-check": args.skip_branch_check,
        "disallow-downgrade": args.disallow_downgrade,
        **_modifiers(args),
    }
    if args.preview:
        options["preview"] = True
    request = Request("Deploy", [args.revision], options, osname=args.osname)
    result = client.transact(request, Reporter(quiet=args.quiet))
    new = result["new"]["checksum"]
    if args.preview:
        if not result["changed"]:
            print(f"No change: {new} is already deployed.")
            return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
        _print_available(result, preview=True)
        return 0
    return _finish(args, client, result, f"No change: {new} is already deployed.")


def cmd_rebase(args: argparse.Namespace) -> int:
    client = _open(args)
    options: dict[str, Any] = {
        "skip-purge": args.skip_purge,
        "disallow-downgrade": args.disallow_downgrade,
        **_modifiers(args),
    }
    for key in ("custom_origin_url", "custom_origin_description"):
        if getattr(args, key) is not None:
            options[key.replace("_", "-")] = getattr(args, key)
    if args.branch is not None:
        options["branch"] = args.branch
    if args.remote is not None:
        options["remote"] = args.remote
    request = Request(
        "Rebase", [args.refspec or "", args.revision or ""], options, osname=args.osname
    )
    result = client.transact(request, Reporter(quiet=args.quiet))
    if result["deployed"]:
        print(f"Rebased from {result['from']} to {result['to']}")
    return _finish(args, client, result, "No change.")


def cmd_remote_add(args: argparse.Namespace) -> int:
    imported = open_client(args.sysroot).remote_add(
        args.name, args.url, gpg_verify=not args.no_gpg_verify, gpg_keys=args.gpg_import
    )
    if not args.quiet:
        keys = f"; {imported} GPG key(s) imported" if args.gpg_import else ""
        verify = "off" if args.no_gpg_verify else "on"
        print(f'Added remote "{args.name}" ({args.url}), GPG verification {verify}{keys}')
    return 0


def cmd_remote_list(args: argparse.Namespace) -> int:
    for name, url in open_client(args.sysroot).remote_list():
        print(f"{name:<14} {url}" if args.show_urls else name)
    return 0


def cmd_remote_delete(args: argparse.Namespace) -> int:
    open_client(args.sysroot).remote_delete(args.name)
    if not args.quiet:
        print(f'Deleted remote "{args.name}"')
    return 0
