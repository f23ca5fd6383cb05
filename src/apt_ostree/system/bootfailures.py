"""Deployments that failed their boot on probation and were rolled back from.

Kept in the stateroot's /var (`var/lib/apt-ostree/boot-failures.json`):
`last`, the latest automatic rollback, which `status` reports until the next
deployment change; `failed`, the last few failed deployments, so that a later
upgrade to the same base commit warns. A failed required health check of the
current boot is recorded beside it (`health-failure.json`) before the machine
reboots, to say why on the boot that falls back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_DIR = Path("var/lib/apt-ostree")
FAILURES = "boot-failures.json"
CHECK_FAILURE = "health-failure.json"
KEEP = 10
NO_BOOT_COMPLETE = "did not reach boot-complete.target"


def _path(sysroot_path: Path, osname: str, name: str) -> Path:
    return sysroot_path / "ostree/deploy" / osname / STATE_DIR / name


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def record_failure(sysroot_path: Path, osname: str, failure: dict[str, Any]) -> None:
    """Remember `failure` (keys: deployment, checksum, base-checksum, version, time,
    reason, check); the same deployment recorded twice is kept once."""
    path = _path(sysroot_path, osname, FAILURES)
    data = _read(path)
    failed = [f for f in data.get("failed", []) if f.get("deployment") != failure["deployment"]]
    _write(path, {"last": failure, "failed": [*failed, failure][-KEEP:]})


def last_failure(sysroot_path: Path, osnames: list[str]) -> dict[str, Any] | None:
    for osname in osnames:
        last = _read(_path(sysroot_path, osname, FAILURES)).get("last")
        if last:
            return dict(last)
    return None


def clear_last(sysroot_path: Path, osname: str) -> None:
    """The latest rollback has been reported long enough: a deployment change was made."""
    path = _path(sysroot_path, osname, FAILURES)
    data = _read(path)
    if data.get("last"):
        _write(path, {"last": None, "failed": data.get("failed", [])})


def failures_of_base(sysroot_path: Path, osname: str, base_checksum: str) -> list[dict[str, Any]]:
    """The recorded failed boots of deployments made from `base_checksum`."""
    failed = _read(_path(sysroot_path, osname, FAILURES)).get("failed", [])
    return [f for f in failed if f.get("base-checksum") == base_checksum]


def record_check_failure(sysroot_path: Path, osname: str, record: dict[str, Any]) -> None:
    """A required check failed on this boot (keys: deployment, boot-id, time, check, output)."""
    _write(_path(sysroot_path, osname, CHECK_FAILURE), record)


def check_failure_of(sysroot_path: Path, osname: str, deployment: str) -> dict[str, Any] | None:
    record = _read(_path(sysroot_path, osname, CHECK_FAILURE))
    return record if record.get("deployment") == deployment else None
