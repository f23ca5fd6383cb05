"""`apply-live` (and the output of `install -A`): the pending deployment's changes
on the running system, without a reboot (docs/apply-live.md)."""

from __future__ import annotations

import argparse
from typing import Any

from apt_ostree.cli.options import add_stateroot
from apt_ostree.client import Request, open_client
from apt_ostree.reporter import Reporter


def register(sub: Any) -> None:
    p = sub.add_parser(
        "apply-live", help="apply the pending deployment's changes to the running system",
        description="Apply the difference between the booted deployment and the pending"
        " one (or --target REV) to the running system: /usr through a transient overlay"
        " (gone at the next boot, when the deployment itself is booted), new and changed"
        " files of /etc where the machine kept the default. Only package additions"
        " unless --allow-replacement.",
    )  # fmt: skip
    p.add_argument("--target", metavar="REV", help="apply this commit, not the pending deployment")
    p.add_argument("--reset", action="store_true", help="go back to the booted commit")
    p.add_argument(
        "--allow-replacement", action="store_true",
        help="also apply removed, upgraded and downgraded packages",
    )  # fmt: skip
    add_stateroot(p)
    p.set_defaults(func=cmd_apply_live)


def cmd_apply_live(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"reset": args.reset, "allow-replacement": args.allow_replacement}
    if args.target:
        options["target"] = args.target
    request = Request("ApplyLive", [], options, osname=args.osname)
    result = open_client(args.sysroot).transact(request, Reporter(quiet=args.quiet))
    print_live(result)
    return 0


def print_live(result: dict[str, Any]) -> None:
    if not result["changed"]:
        print(f"The running system already is {result['target']}")
        return
    print(f"Computed /usr diff: {result['added']} added, {result['modified']} changed,"
          f" {result['removed']} removed")  # fmt: skip
    packages = result.get("packages")
    if packages and packages["added"]:
        print("Added:")
        for name, version, arch in packages["added"]:
            print(f"  {name} {version} ({arch})")
    kept = result["etc"]["kept"]
    if kept:
        print(f"Left as the machine has them: {', '.join('/etc/' + p for p in kept)}")
    print("Successfully updated running filesystem tree.")
