"""`apt-ostree status`: rpm-ostree's text and JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from apt_ostree.client.local import open_sysroot
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


def render_text(status: dict[str, Any], verbose: bool) -> str:
    lines = ["State: idle"]
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
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from apt_ostree.system.status import sysroot_status

    sysroot = open_sysroot(args.sysroot)
    status = sysroot_status(sysroot, booted_only=args.booted)
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        print()
    else:
        print(render_text(status, args.verbose))
    if args.pending_exit_77 and _pending(status, sysroot.booted):
        return EXIT_UNCHANGED
    return 0


def _pending(status: dict[str, Any], booted: bool) -> bool:
    """A deployment waits for the next boot: staged, or a default that is not booted."""
    deployments = status["deployments"]
    if not deployments:
        return False
    return bool(deployments[0]["staged"] or (booted and not deployments[0]["booted"]))
