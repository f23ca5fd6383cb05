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
    p.add_argument(
        "-J", "--jsonpath", metavar="EXPRESSION",
        help="print the JSON values that this JSONPath expression selects, as an array",
    )  # fmt: skip
    # rpm-ostree keeps -p/--pretty, deprecated, as an option without effect.
    p.add_argument("-p", "--pretty", action="store_true", help=argparse.SUPPRESS)
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


def describe_boot_failure(failure: dict[str, Any] | None) -> list[str]:
    """The latest automatic rollback: which deployment failed, when and why."""
    if not failure:
        return []
    version = f" (version {failure['version']})" if failure.get("version") else ""
    lines = [f"Warning: deployment {failure['deployment']}{version} failed to boot"
             f" at {failure['time']}; rolled back to {failure['rolled-back-to']}"]  # fmt: skip
    reason = failure["reason"].splitlines() or [""]
    lines.append(f"         why: {reason[0]}")
    lines.extend(f"              {line}" for line in reason[1:])
    return lines


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
    lines.extend(describe_boot_failure(status.get("boot-failure")))
    lines.append("Deployments:")
    for i, d in enumerate(status["deployments"]):
        if i:
            lines.append("")
        mark = "●" if d["booted"] else " "
        lines.append(f"{mark} {d['origin'] or d['checksum']}")
        if d.get("custom-origin"):
            url, description = d["custom-origin"]
            lines.append(_field("CustomOrigin", f"{description} ({url})" if description else url))
        if d["version"]:
            lines.append(_field("Version", f"{d['version']} ({_when(d['base-timestamp'])})"))
        live = "live-replaced" in d or "live-inprogress" in d
        if d["base-checksum"]:
            lines.append(_field("BootedBaseCommit" if live else "BaseCommit", d["base-checksum"]))
        lines.append(_field("BootedCommit" if live else "Commit", d["checksum"]))
        if d.get("live-inprogress"):
            lines.append(_field("InterruptedLiveCommit", d["live-inprogress"]))
        if d.get("live-replaced"):
            lines.append(_field("LiveCommit", d["live-replaced"]))
        if d.get("kernel"):
            lines.append(_field("Kernel", f"{d['kernel']} (layered)"))
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
        if d.get("unlocked", "none") != "none":
            lines.append(_field("Unlocked", d["unlocked"]))
        if d["base-removals"]:
            removed = " ".join(f"{p[1]} {p[0].split('_')[1]}" if verbose else p[1]
                               for p in d["base-removals"])  # fmt: skip
            lines.append(_field("RemovedBasePackages", removed))
        if d["base-local-replacements"]:
            replaced = _replacements(d["base-local-replacements"])
            lines.append(_field("ReplacedBasePackages", replaced))
        lines += _remote_overrides(d)
        for key, label in (
            ("packages", "LayeredPackages"),
            ("requested-local-packages", "LocalPackages"),
        ):
            if d[key]:
                lines.append(_field(label, " ".join(map(str, d[key]))))
        inactive = [p for p in d["requested-packages"] if p not in d["packages"]]
        if inactive:
            lines.append(_field("InactiveRequests", " ".join(inactive)))
        # As rpm-ostree: the dracut arguments, or "regenerate" without any.
        if d["regenerate-initramfs"]:
            lines.append(_field("Initramfs", " ".join(d["initramfs-args"]) or "regenerate"))
        if d["initramfs-etc"]:
            lines.append(_field("InitramfsEtc", " ".join(d["initramfs-etc"])))
    driver = status.get("update-driver")
    if driver:
        unit = f" ({driver['driver-sd-unit']})" if driver["driver-sd-unit"] else ""
        lines.insert(1, f"AutomaticUpdatesDriver: {driver['driver-name']}{unit}")
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
    # Before -b filters the list: a pending deployment is never the booted one.
    pending = _pending(status)
    if args.booted:
        status["deployments"] = [d for d in status["deployments"] if d["booted"]]
    if args.jsonpath is not None:
        from apt_ostree.cli.jsonpath import query

        json.dump(query(status, args.jsonpath), sys.stdout, indent=2)
        print()
    elif args.json:
        json.dump(status, sys.stdout, indent=2)
        print()
    else:
        print(render_text(status, args.verbose))
    if args.pending_exit_77 and pending:
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


def _replacements(pairs: list[list[list[Any]]]) -> str:
    """`name old -> new, ...` of [new, old] package tuples (the version is the middle
    part of name_version_arch)."""
    return ", ".join(
        f"{new[1]} {old[0].split('_')[1]} -> {new[0].split('_')[1]}" for new, old in pairs
    )


def _remote_overrides(d: dict[str, Any]) -> list[str]:
    """Base packages replaced from the APT sources, and the requests that are inactive
    (the base has that version, or the sources nothing newer)."""
    lines, active = [], set()
    for pairs in d.get("base-remote-replacements", {}).values():
        lines.append(_field("RemoteOverrides", _replacements(pairs)))
        active |= {new[1] for new, _ in pairs}
    inactive = [
        spec
        for _, specs in d.get("requested-base-remote-replacements", [])
        for spec in specs
        if spec.split("=", 1)[0].split(":", 1)[0] not in active
    ]
    if inactive:
        lines.append(_field("InactiveRemoteOverrides", " ".join(inactive)))
    return lines
