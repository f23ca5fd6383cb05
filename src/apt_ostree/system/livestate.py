"""The live state of the booted deployment (`apply-live`, system/livefs.py), as
rpm-ostree keeps it: a stamp in libostree's transient state directory of the
deployment, which is gone at the next boot with the overlay it describes, and two
refs in the sysroot's repo: the commit applied (`live-replaced` in status) and the
one being applied (`live-inprogress`, left behind when an apply was interrupted).
The refs also keep both commits from being pruned while they are in use.

Small on purpose: `status` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo

LIVE_REF = "apt-ostree/live-apply"
LIVE_REF_INPROGRESS = "apt-ostree/live-apply-inprogress"
# libostree's transient state of deployments (/run: emptied at every boot).
RUNSTATE_DIR = Path("/run/ostree/deployment-state")
STAMP = "apt-ostree-live.stamp"


class LiveState(NamedTuple):
    commit: str | None  # applied (rpm-ostree's live-replaced)
    inprogress: str | None  # being applied, or interrupted (live-inprogress)


def stamp_path(checksum: str, serial: int) -> Path:
    return RUNSTATE_DIR / f"{checksum}.{serial}" / STAMP


def live_state(repo: OSTree.Repo, checksum: str, serial: int) -> LiveState | None:
    """The live state of the booted deployment `checksum.serial`; None when nothing
    was applied to it since it booted."""
    if not stamp_path(checksum, serial).exists():
        return None
    return LiveState(ostree_repo.resolve_ref(repo, LIVE_REF),
                     ostree_repo.resolve_ref(repo, LIVE_REF_INPROGRESS))  # fmt: skip


def write_state(repo: OSTree.Repo, booted: OSTree.Deployment, state: LiveState) -> None:
    try:
        repo.set_ref_immediate(None, LIVE_REF, state.commit, None)
        repo.set_ref_immediate(None, LIVE_REF_INPROGRESS, state.inprogress, None)
    except GLib.Error as e:
        raise AptOstreeError(f"cannot record the live state: {e.message}") from e
    stamp = stamp_path(str(booted.get_csum()), booted.get_deployserial())
    if state.commit or state.inprogress:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    else:
        stamp.unlink(missing_ok=True)


def live_keys(repo: OSTree.Repo, checksum: str, serial: int) -> dict[str, str]:
    """rpm-ostree's keys of the booted deployment in `status --json` (left out
    when empty, as there)."""
    state = live_state(repo, checksum, serial)
    if state is None:
        return {}
    keys = {"live-inprogress": state.inprogress, "live-replaced": state.commit}
    return {k: v for k, v in keys.items() if v}
