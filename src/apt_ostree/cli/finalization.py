"""`--lock-finalization` and `finalize-deployment`: a staged deployment that waits.

With `--lock-finalization` a change stages its new deployment locked: a reboot
(or a power cut) boots the current deployment again and the staged one is gone.
`finalize-deployment CHECKSUM` unlocks it and reboots into it, as rpm-ostree's
(zincati's way of rebooting only when the fleet's schedule allows).
"""

from __future__ import annotations

import argparse
from typing import Any

from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Request, open_client
from apt_ostree.reporter import Reporter


def add_lock_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lock-finalization", action="store_true",
        help="stage the new deployment locked: it is booted only after finalize-deployment",
    )  # fmt: skip


def lock_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"lock-finalization": True} if args.lock_finalization else {}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "finalize-deployment", help="unlock the staged deployment and reboot into it",
        description="The staged deployment was made with --lock-finalization: unlock it"
        " and reboot. CHECKSUM (its commit or base commit) guards against finalizing"
        " another deployment than the one meant.",
    )  # fmt: skip
    p.add_argument("checksum", nargs="?", metavar="CHECKSUM")
    p.add_argument(
        "--allow-missing-checksum", action="store_true", help="finalize whatever is staged"
    )
    p.add_argument(
        "--allow-unlocked", action="store_true",
        help="reboot even if the staged deployment is not locked",
    )  # fmt: skip
    add_stateroot(p)
    p.set_defaults(func=cmd_finalize_deployment)


def cmd_finalize_deployment(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "allow-missing-checksum": args.allow_missing_checksum,
        "allow-unlocked": args.allow_unlocked,
    }
    if args.checksum:
        options["checksum"] = args.checksum
    request = Request("FinalizeDeployment", [], options, osname=args.osname)
    result = open_client(args.sysroot).transact(request, Reporter(quiet=args.quiet))
    print(f"Finalizing {result['checksum']}; rebooting")
    return 0
