"""Failed finalizations of staged deployments.

A booted system's new deployment is staged and written by
`ostree admin finalize-staged` when ostree-finalize-staged.service stops at
shutdown. If that fails, the staged deployment is lost and the machine boots
the old default. apt-ostree's ExecStopPost= (data/lib/finalize-staged-result)
records the failure in the stateroot's /var; `status` reports the record until
the next deployment change removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD = Path("var/lib/apt-ostree/finalize-failure")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class FinalizeFailure:
    """A staged deployment that ostree-finalize-staged failed to write at shutdown."""

    osname: str
    time: str
    result: str  # systemd's SERVICE_RESULT: exit-code, timeout, signal...
    message: str  # ostree's last error line, "" when the journal had none
    boot_id: str

    def to_json(self) -> dict[str, str]:
        return {"osname": self.osname, "time": self.time, "result": self.result,
                "message": self.message}  # fmt: skip


def record_path(sysroot_path: Path, osname: str) -> Path:
    return sysroot_path / "ostree/deploy" / osname / RECORD


def parse_record(osname: str, text: str) -> FinalizeFailure:
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return FinalizeFailure(
        osname=osname,
        time=fields.get("time", ""),
        result=fields.get("result", "failed"),
        message=fields.get("message", ""),
        boot_id=fields.get("boot-id", ""),
    )


def read_failure(sysroot_path: Path, osnames: list[str], *, booted: bool) -> FinalizeFailure | None:
    """The recorded failure of a previous boot's finalization, if any.

    On a booted system a record written during this very boot (a manual
    `ostree admin finalize-staged`) is not a previous boot's failure.
    """
    current = BOOT_ID.read_text().strip() if booted else None
    for osname in osnames:
        try:
            failure = parse_record(osname, record_path(sysroot_path, osname).read_text())
        except OSError:
            continue
        if failure.boot_id != current:
            return failure
    return None


def clear_failure(sysroot_path: Path, osname: str) -> None:
    """Forget a recorded failure: a new deployment change has been made."""
    record_path(sysroot_path, osname).unlink(missing_ok=True)


# -- Locked finalization (`--lock-finalization`, `finalize-deployment`) ----------------
#
# While this file exists, `ostree admin finalize-staged` (at shutdown) leaves the
# staged deployment alone: the machine boots the old default again and the staged
# one is gone with /run. ostree itself defines the file (Debian 12's 2022.7 has it).
STAGED_LOCKED = Path("/run/ostree/staged-deployment-locked")


def finalization_locked() -> bool:
    return STAGED_LOCKED.exists()


def lock_finalization(locked: bool) -> None:
    """Before staging: a new staged deployment is locked or not, whatever the
    previous one was."""
    if locked:
        STAGED_LOCKED.parent.mkdir(parents=True, exist_ok=True)
        STAGED_LOCKED.touch()
    else:
        STAGED_LOCKED.unlink(missing_ok=True)
