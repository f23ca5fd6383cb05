"""The machine's history (`apt-ostree ex history`): which deployment each boot started,
and what made it.

Two records in the stateroot's /var/lib/apt-ostree, one JSON object per line:
- `boots`: appended at every boot by apt-ostree-boot-record.service
  (data/lib/record-boot): boot id, time, the booted deployment (`CHECKSUM.SERIAL`);
- `deployments`: appended when apt-ostree makes a deployment (system/sysroot.py):
  time, commit, the command that made it.

No GLib here: the CLI reads the records on its fast path, as `status` does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RECORDS = Path("var/lib/apt-ostree")
BOOTS = "boots"
DEPLOYMENTS = "deployments"


def records_dir(sysroot_path: Path, osname: str) -> Path:
    return sysroot_path / "ostree/deploy" / osname / RECORDS


def record_deployment(sysroot_path: Path, osname: str, checksum: str, command: str) -> None:
    """Append what made a new deployment of `checksum` (best effort: the history
    must never fail a deployment that has been made)."""
    entry = {"time": int(time.time()), "checksum": checksum, "command": command}
    directory = records_dir(sysroot_path, osname)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted in the stateroot's /var is not written through.
        fd = os.open(
            directory / DEPLOYMENTS,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
        )
    except OSError:
        return
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    out = []
    with os.fdopen(fd) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a power loss
            if isinstance(entry, dict):
                out.append(entry)
    return out


def read_history(sysroot_path: Path, osnames: list[str]) -> list[dict[str, Any]]:
    """The boots of the machine, newest first; consecutive boots of one deployment
    are one entry (rpm-ostree's BootCount), with what made that deployment."""
    boots: list[dict[str, Any]] = []
    created: dict[str, list[dict[str, Any]]] = {}
    for osname in osnames:
        directory = records_dir(sysroot_path, osname)
        for boot in _read(directory / BOOTS):
            boots.append(dict(boot, osname=osname))
        for made in _read(directory / DEPLOYMENTS):
            created.setdefault(str(made.get("checksum")), []).append(made)
    boots.sort(key=lambda b: int(b.get("time", 0)))
    entries: list[dict[str, Any]] = []
    for boot in boots:
        deployment = str(boot.get("deployment", ""))
        last = entries[-1] if entries else None
        if (
            last is not None
            and last["deployment"] == deployment
            and last["osname"] == boot["osname"]
        ):
            last["boot-count"] += 1
            last["boot-timestamp"] = int(boot.get("time", 0))
            continue
        checksum = deployment.rsplit(".", 1)[0]
        boot_time = int(boot.get("time", 0))
        # What made it: the latest record of the commit before this boot.
        before = [m for m in created.get(checksum, []) if int(m.get("time", 0)) <= boot_time]
        maker = max(before, key=lambda m: int(m.get("time", 0))) if before else None
        entries.append({
            "osname": boot["osname"],
            "deployment": deployment,
            "checksum": checksum,
            "boot-timestamp": boot_time,
            "first-boot-timestamp": boot_time,
            "boot-count": 1,
            "create-timestamp": int(maker["time"]) if maker else None,
            "create-command": str(maker["command"]) if maker else None,
        })  # fmt: skip
    entries.reverse()
    return entries
