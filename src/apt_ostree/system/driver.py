"""Update drivers (rpm-ostree's `deploy --register-driver`): a program such as an
automatic-update agent that says it drives the updates of the running system.

The record lives in /run, so it lasts until the next boot, and belongs to the
booted system only. While one is registered, `upgrade`, `deploy` and `rebase`
refuse unless given `--bypass-driver` (docs/upgrade.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from apt_ostree.errors import AptOstreeError

DRIVER_STATE = Path("/run/apt-ostree/update-driver.json")


def read_driver(booted: bool, state: Path = DRIVER_STATE) -> dict[str, Any] | None:
    """`{"driver-name": ..., "driver-sd-unit": ...}` of the registered driver, or None."""
    if not booted:
        return None
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("driver-name"):
        return None
    return {
        "driver-name": str(data["driver-name"]),
        "driver-sd-unit": str(data.get("driver-sd-unit", "")),
    }


def register_driver(booted: bool, name: str, unit: str, state: Path = DRIVER_STATE) -> None:
    if not booted:
        raise AptOstreeError("--register-driver needs the booted system: an update driver"
                             " drives the running system, not an offline sysroot")  # fmt: skip
    if not name or any(c.isspace() for c in name):
        raise AptOstreeError(f'invalid update driver name "{name}"')
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps({"driver-name": name, "driver-sd-unit": unit}) + "\n")
    os.replace(tmp, state)
