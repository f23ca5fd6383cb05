"""`apt-ostree status`: rpm-ostree's text and JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from apt_ostree.client import open_client
from apt_ostree.errors import EXIT_UNCHANGED


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show the deployments")
    p.add_argument("--json", action="store_true", help="print JSON (rpm-ostree's keys)")
    p.add_argument("-b", "--booted", action="store_true", help="only the booted deployment")
    p.add_argument("-v", "--verbose", action="store_true", help="more details")
    p.add_argument(
        "--pending-exit-77", action="store_true", help="exit 77 if a deployment is pending"
    )
    p.set_defaults(func=cmd_status)


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _field(name: str, value: str) -> str:
    return f"{name:>26}: {value}"


def describe_transaction(t: dict[str, Any]) -> str:
    """`upgrade by pid 1234`, as apt-ostreed's Busy message says it."""
    caller = t.get("caller") or {}
    who = f"pid {caller['pid']}" if caller.get("pid") is not None else caller.get("bus-name", "?")
    return f"{t['command']} by {who}"


def render_text(status: dict[str, Any], verbose: bool) -> str:
    transaction = status.get("transaction")
    lines = ["State: busy" if transaction else "State: idle"]
    if transaction:
        lines.append(f"Transaction: {describe_transaction(transaction)}")
    failure = status.get("finalize-failure")
    if failure:
        # As rpm-ostree words it; the staged deployment of that boot is gone.
        lines.append(f"Warning: failed to finalize previous deployment ({failure['result']}"
                     f" at {failure['time']})")  # fmt: skip
        if failure["message"]:
            lines.append(f"         {failure['message']}")
        lines.append("         check `journalctl -b -1 -u ostree-finalize-staged.service`")
    lines.append("Deployments:")
    for i, d in enumerate(status["deployments"]):
        if i:
            lines.append("")
        mark = "●" if d["booted"] else " "
        lines.append(f"{mark} {d['origin'] or d['checksum']}")
        if d["version"]:
            lines.append(_field("Version", f"{d['version']} ({_when(d['base-timestamp'])})"))
        if d["base-checksum"]:
            lines.append(_field("BaseCommit", d["base-checksum"]))
        lines.append(_field("Commit", d["checksum"]))
        if verbose:
            lines.append(_field("OSName", d["osname"]))
            lines.append(_field("Serial", str(d["serial"])))
            lines.append(_field("KernelArguments", " ".join(d["kernel-arguments"])))
        if d["staged"]:
            lines.append(_field("Staged", "yes"))
        if d.get("finalization-locked"):
            lines.append(
                _field("Finalization", "locked (boots after apt-ostree finalize-deployment)")
            )
        if d["pinned"]:
            lines.append(_field("Pinned", "yes"))
        if d["base-removals"]:
            lines.append(_field("RemovedBasePackages", " ".join(d["base-removals"])))
        if d["base-local-replacements"]:
            replaced = ", ".join(
                f"{n} {old} -> {new}" for n, old, new in d["base-local-replacements"]
            )
            lines.append(_field("ReplacedBasePackages", replaced))
        for key, label in (
            ("packages", "LayeredPackages"),
            ("requested-local-packages", "LocalPackages"),
        ):
            if d[key]:
                lines.append(_field(label, " ".join(map(str, d[key]))))
        inactive = [p for p in d["requested-packages"] if p not in d["packages"]]
        if inactive:
            lines.append(_field("InactiveRequests", " ".join(inactive)))
    update = status.get("cached-update")
    if update:
        lines += ["", *render_update(update)]
    return "\n".join(lines)


def render_update(update: dict[str, Any]) -> list[str]:
    """The available update, as `upgrade --check` prints it, and whether it is staged."""
    from apt_ostree.cli.db import diff_summary

    lines = ["AvailableUpdate:"]
    if update["version"]:
        lines.append(f"{'Version':>15}: {update['version']} ({_when(update['timestamp'])})")
    lines.append(f"{'Commit':>15}: {update['checksum']}")
    lines.append(f"{'Diff':>15}: {diff_summary(update['diff'])}")
    if update["staged"]:
        lines.append(f"{'Staged':>15}: yes")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    status = open_client(args.sysroot).status()
    if args.booted:
        status["deployments"] = [d for d in status["deployments"] if d["booted"]]
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        print()
    else:
        print(render_text(status, args.verbose))
    if args.pending_exit_77 and _pending(status):
        return EXIT_UNCHANGED
    return 0


def _pending(status: dict[str, Any]) -> bool:
    """A deployment waits for the next boot: staged, or (booted system) a default that
    is not the booted one."""
    deployments = status["deployments"]
    if not deployments:
        return False
    booted = any(d["booted"] for d in deployments)
    return bool(deployments[0]["staged"] or (booted and not deployments[0]["booted"]))
