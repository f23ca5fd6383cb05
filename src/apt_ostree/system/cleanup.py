"""`apt-ostree cleanup`: remove pending or rollback deployments, prune, drop caches.

Pruning never uses `Sysroot.cleanup_prune_repo` (with default options it
deletes every object of the repository): it does what `Sysroot.cleanup()`
does, `prepare_cleanup()` (old deployment directories and boot versions,
deployment refs `ostree/B/S/N` for every deployment, the staged one included)
followed by a refs-only `Repo.prune`, so that every deployment's commit and
every ref's commit stays, and the freed size can be reported.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.cancel import point_of_no_return
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree.sysroot import DeploymentInfo, stdout_to_stderr
from apt_ostree.system.layering import local_store
from apt_ostree.system.origin import Origin, OriginError
from apt_ostree.system.rollback import deployment_roles, write_order
from apt_ostree.system.sysroot import Sysroot


class CleanupError(AptOstreeError):
    pass


@dataclass
class CleanupRequest:
    pending: bool = False
    rollback: bool = False
    base: bool = False
    repomd: bool = False

    @property
    def empty(self) -> bool:
        return not (self.pending or self.rollback or self.base or self.repomd)


@dataclass
class CleanupResult:
    removed: list[tuple[str, DeploymentInfo]] = field(default_factory=list)  # (role, deployment)
    kept_pinned: list[DeploymentInfo] = field(default_factory=list)
    pruned: bool = False
    objects_pruned: int = 0
    bytes_freed: int = 0
    cache_bytes_freed: int | None = None  # None: caches not asked for
    local_debs_removed: int = 0


def plan_cleanup(
    deployments: list[DeploymentInfo],
    booted_system: bool,
    *,
    pending: bool,
    rollback: bool,
    osname: str | None = None,
) -> tuple[list[int], list[tuple[str, DeploymentInfo]], list[DeploymentInfo]]:
    """(indexes to keep, in order; removed with their role; pinned ones kept)."""
    if not deployments or not (pending or rollback):
        return [d.index for d in deployments], [], []
    roles = deployment_roles(deployments, booted_system, osname)
    doomed = (roles.pending if pending else []) + (roles.rollback if rollback else [])
    pending_indexes = {d.index for d in roles.pending}
    removed = [
        ("pending" if d.index in pending_indexes else "rollback", d) for d in doomed if not d.pinned
    ]
    gone = {d.index for _, d in removed}
    kept_pinned = [d for d in doomed if d.pinned]
    return [d.index for d in deployments if d.index not in gone], removed, kept_pinned


def cache_dir(sysroot: Sysroot, osname: str) -> Path:
    """apt-ostree's caches (APT lists, fetched .debs) in the OS's /var/cache."""
    return sysroot.path / "ostree/deploy" / osname / "var/cache/apt-ostree"


def _tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def clear_cache(path: Path) -> int:
    """Empty the cache directory (it stays); return the bytes freed."""
    if not path.is_dir():
        return 0
    freed = _tree_size(path)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return freed


def prune_local_debs(sysroot: Sysroot) -> tuple[int, int]:
    """Remove stored `install ./file.deb` packages that no deployment's origin names
    (left by an uninstall, a removed deployment or a failed install): (files, bytes)."""
    store = local_store(sysroot)
    if not store.is_dir():
        return 0, 0
    wanted: set[str] = set()
    for d in sysroot.deployments():
        try:
            origin = Origin.from_dict(d.origin)
        except OriginError:
            return 0, 0  # an origin we cannot read might name any of them: keep all
        wanted |= {e.split(":", 1)[0] for e in origin.requested_local + origin.replaced_local}
    removed = freed = 0
    for path in store.iterdir():
        if path.name.split(".", 1)[0] not in wanted:
            freed += path.lstat().st_size
            path.unlink()
            removed += 1
    return removed, freed


def prune(sysroot: Sysroot) -> tuple[int, int]:
    """`Sysroot.cleanup()`, step by step: return (objects pruned, bytes freed).
    Container image refs that no deployment follows go first."""
    from apt_ostree.system.image import prune_image_refs
    from apt_ostree.system.origin import Origin, OriginError

    images = []
    for d in sysroot.deployments():
        try:
            image = Origin.from_dict(d.origin).image
        except OriginError:
            continue
        if image is not None:
            images.append(image)
    try:
        prune_image_refs(sysroot.repo, images)
        with stdout_to_stderr():
            sysroot.ostree.prepare_cleanup(None)
        _, _total, pruned, freed = sysroot.repo.prune(OSTree.RepoPruneFlags.REFS_ONLY, 0, None)
    except GLib.Error as e:
        raise CleanupError(f"cannot clean up the sysroot: {e.message}") from e
    return int(pruned), int(freed)


def cleanup(sysroot: Sysroot, req: CleanupRequest, osname: str | None = None) -> CleanupResult:
    """Needs the sysroot lock. Removing deployments implies pruning (-b). Pending and
    rollback deployments, and the cached metadata, are those of `osname` (default:
    the booted or default deployment's OS)."""
    assert sysroot._locked, "cleanup() needs the sysroot lock"
    if req.empty:
        raise CleanupError("nothing to clean up: give at least one of -p, -r, -b, -m")
    point_of_no_return()
    result = CleanupResult()
    infos = sysroot.deployments()
    keep, result.removed, result.kept_pinned = plan_cleanup(
        infos, sysroot.booted, pending=req.pending, rollback=req.rollback, osname=osname
    )
    if result.removed:
        objects = sysroot.deployment_objects()
        write_order(sysroot, [objects[i] for i in keep])
    if req.base or result.removed:
        result.objects_pruned, result.bytes_freed = prune(sysroot)
        sysroot.reload()
        result.local_debs_removed, freed = prune_local_debs(sysroot)
        result.bytes_freed += freed
        result.pruned = True
    if req.repomd:
        cached = cache_dir(sysroot, osname or sysroot.default_osname()) if infos else None
        freed = clear_cache(cached) if cached is not None else 0
        result.cache_bytes_freed = freed
    return result
