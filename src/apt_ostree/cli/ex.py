"""`ex`: rpm-ostree's experimental commands; `ex history` (docs/cli.md, "ex history")."""

from __future__ import annotations

import argparse
import json
from typing import Any

from apt_ostree.cli.status import _field, _when
from apt_ostree.client import open_client

DEFAULT_LIMIT = 3  # as rpm-ostree


def register(sub: Any) -> None:
    ex = sub.add_parser("ex", help="experimental commands (history)")
    ex_sub = ex.add_subparsers(dest="ex_command", metavar="COMMAND", required=True)
    history = ex_sub.add_parser(
        "history", help="the deployments this machine booted, newest first",
        description="Each boot of the machine, newest first, with the deployment it started"
        " and what made that deployment; consecutive boots of one deployment are one entry."
        " apt-ostree records boots (apt-ostree-boot-record.service) and the deployments it"
        " makes in the stateroot's /var/lib/apt-ostree.",
    )  # fmt: skip
    history.add_argument("-v", "--verbose", action="store_true", help="also the deployment")
    history.add_argument("--json", action="store_true", help="print JSON")
    limit = history.add_mutually_exclusive_group()
    limit.add_argument("-n", "--limit", type=_positive, default=DEFAULT_LIMIT, metavar="N",
                       help=f"at most N entries (default {DEFAULT_LIMIT})")  # fmt: skip
    limit.add_argument("--all", action="store_true", help="every entry")
    history.set_defaults(func=cmd_history)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {value!r}")
    return n


def cmd_history(args: argparse.Namespace) -> int:
    client = open_client(args.sysroot)
    deployments = client.status()["deployments"]
    osnames = sorted({d["osname"] for d in deployments})
    versions = {d["checksum"]: d["version"] for d in deployments}
    entries = client.history(osnames)
    if not args.all:
        entries = entries[: args.limit]
    for entry in entries:
        entry["version"] = versions.get(entry["checksum"])
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print("No boots recorded yet.")
    for i, e in enumerate(entries):
        if i:
            print()
        print(_field("BootTimestamp", _when(e["boot-timestamp"])))
        if e["boot-count"] > 1:
            first = _when(e["first-boot-timestamp"])
            print(_field("BootCount", f"{e['boot-count']}; first booted on {first}"))
        if e["create-timestamp"] is not None:
            print(_field("CreateTimestamp", _when(e["create-timestamp"])))
            print(_field("CreateCommand", e["create-command"]))
        print(_field("Commit", e["checksum"]))
        if e["version"]:
            print(_field("Version", e["version"]))
        if args.verbose:
            print(_field("Deployment", f"{e['osname']}-{e['deployment']}"))
    return 0
