"""Lockfile pins in the resolver child: locked versions, strictness, and digests to lock.

A locked package may only be installed in its locked version (and
architecture, and .deb: the sha256 of the signed index must be the locked
one). A locked version that the sources no longer have fails the resolution
as soon as the package is needed; with `strict`, so does every package that
the lockfile does not name. Runs in the resolver child only: apt_pkg is
imported there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from apt_ostree.debian.indexes import archive_location, newest_index_date
from apt_ostree.debian.packages import LockedPackage
from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    import apt_pkg


def _records() -> tuple[apt_pkg.SourceList, apt_pkg.PackageRecords, apt_pkg.Cache]:
    import apt_pkg

    cache = apt_pkg.Cache(None)
    sources = apt_pkg.SourceList()
    sources.read_main_list()
    return sources, apt_pkg.PackageRecords(cache), cache


def _versions(cache: apt_pkg.Cache, name: str, arch: str) -> list[apt_pkg.Version]:
    try:
        return list(cache[(name, arch)].version_list)
    except KeyError:
        return []


def _locked_version(
    cache: apt_pkg.Cache,
    sources: apt_pkg.SourceList,
    records: apt_pkg.PackageRecords,
    lock: LockedPackage,
    arch: str,
) -> tuple[apt_pkg.Version | None, str]:
    """The version `lock` names, or None and why it is not available."""
    wanted = [
        ver
        for ver in _versions(cache, lock.name, arch if lock.arch in (None, "all") else lock.arch)
        if ver.ver_str == lock.version and lock.arch in (None, ver.arch) and ver.downloadable
    ]
    unavailable = f"package {lock.describe()} of the lockfile is not available from the sources"
    if not wanted:
        return None, unavailable
    if lock.sha256 is None:
        return wanted[0], ""
    found = []
    for ver in wanted:
        uri, sha256 = archive_location(ver, sources, records)
        if sha256 == lock.sha256:
            return ver, ""
        found.append(f"{sha256} at {uri}")
    return None, (
        f"package {lock.describe()} of the lockfile has another .deb in the sources "
        f"(sha256 {', '.join(found)}; the lockfile says {lock.sha256})"
    )


def pin_locked(
    cache: apt_pkg.Cache, depcache: apt_pkg.DepCache, locked: Iterable[LockedPackage], arch: str
) -> dict[str, tuple[apt_pkg.Package | None, str]]:
    """Make each locked version its package's candidate.

    The answer: {name: (package or None, why)} of the locked packages whose
    version is not available; the caller keeps them out of the tree, so that
    the resolution never falls back to another version of one.
    """
    sources, records, _ = _records()
    unavailable: dict[str, tuple[apt_pkg.Package | None, str]] = {}
    for lock in locked:
        ver, why = _locked_version(cache, sources, records, lock, arch)
        if ver is not None:
            depcache.set_candidate_ver(ver.parent_pkg, ver)
            continue
        lookup_arch = arch if lock.arch in (None, "all") else lock.arch
        try:
            unavailable[lock.name] = (cache[(lock.name, lookup_arch)], why)
        except KeyError:
            unavailable[lock.name] = (None, why)
    return unavailable


def locked_from_request(request: dict[str, Any]) -> list[LockedPackage]:
    return [LockedPackage(**entry) for entry in request.get("locked", [])]


def strict_problems(
    installed: Sequence[tuple[str, str, str]], locked: Iterable[LockedPackage]
) -> list[str]:
    """The packages of `installed` that the lockfile does not name, for --ex-lockfile-strict."""
    names = {lock.name for lock in locked}
    extra = [(name, ver, arch) for name, ver, arch in installed if name not in names]
    if not extra:
        return []
    listed = ", ".join(f'"{name}" {ver} ({arch})' for name, ver, arch in extra[:5])
    more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
    return [f"{listed}{more} not in the lockfile (--ex-lockfile-strict allows only locked ones)"]


def index_digests(request: dict[str, Any]) -> dict[str, Any]:
    """The index sha256 of each package of `request["packages"]`, and the newest index date."""
    sources, records, cache = _records()
    digests: dict[str, str] = {}
    for name, version, pkg_arch in request["packages"]:
        lookup_arch = request["arch"] if pkg_arch == "all" else pkg_arch
        for ver in _versions(cache, name, lookup_arch):
            if ver.ver_str == version and ver.arch == pkg_arch and ver.downloadable:
                digests[name] = archive_location(ver, sources, records)[1]
                break
        else:
            raise ResolveError(
                f'package "{name}" {version} ({pkg_arch}) is not available from the sources'
            )
    return {"sha256": digests, "index_date": newest_index_date()}
