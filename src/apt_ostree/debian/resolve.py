"""Resolve package sets with libapt-pkg: a fresh tree, or a layer on an installed base.

The caller's side of every APT operation: each call sends one request to a
resolver child process (aptchild.py), where libapt-pkg runs with the caller's
state directory (aptstate.py) instead of the host's /etc/apt.

The state directory persists between calls: index files are fetched with
If-Modified-Since and the binary package cache is reused while the sources
are unchanged, so a second resolve against the same sources is fast.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.debian.aptchild import ask_child
from apt_ostree.debian.fetch import FetchError, cached_package
from apt_ostree.debian.packages import (
    IndexDigests,
    LayerPlan,
    LockedPackage,
    PackageInfo,
    PlannedPackage,
)
from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter


def _check_arch(arch: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", arch):
        raise ResolveError(f'invalid architecture "{arch}"')


def _request(
    op: str, stanzas: Sequence[str], arch: str, statedir: Path, **fields: Any
) -> dict[str, Any]:
    """A request to the child for `op` against `stanzas`, with APT state in `statedir`."""
    _check_arch(arch)
    request = {
        "op": op,
        "stanzas": list(stanzas),
        "arch": arch,
        "statedir": str(Path(statedir).absolute()),
    }
    return request | fields


def resolve_tree(
    stanzas: Sequence[str],
    packages: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    exclude: Sequence[str] = (),
    recommends: bool = True,
    essential: bool = True,
    locked: Sequence[LockedPackage] = (),
    lock_strict: bool = False,
    reporter: Reporter | None = None,
) -> list[PackageInfo]:
    """The sorted set of packages a fresh tree with `packages` installed would hold.

    That is what `mmdebstrap --variant=essential --include=<packages>` installs:
    every `Essential: yes` package (when `essential`), `packages`, and their
    dependencies (Recommends too when `recommends`), for `arch`, from `stanzas`
    (deb822 source stanzas) alone. No package in `exclude` may be installed.
    `statedir` is a cache directory owned by the caller and kept between calls.

    A `locked` package can only be installed in its locked version (see
    lockpins.py); with `lock_strict`, no other package can be installed.

    Raises SourceError when an index cannot be fetched or verified and
    ResolveError when the request cannot be satisfied.
    """
    request = _request(
        "tree",
        stanzas,
        arch,
        statedir,
        packages=list(packages),
        exclude=list(exclude),
        recommends=recommends,
        essential=essential,
        locked=[dataclasses.asdict(lock) for lock in locked],
        lock_strict=lock_strict,
    )
    reply = ask_child(request, reporter)
    return [PackageInfo(*entry) for entry in reply["packages"]]


def index_digests(
    stanzas: Sequence[str],
    packages: Sequence[PackageInfo],
    *,
    arch: str,
    statedir: Path,
    reporter: Reporter | None = None,
) -> IndexDigests:
    """The sha256 that the signed indexes of `stanzas` give each of `packages`' .debs.

    Meant right after resolve_tree() with the same sources and `statedir`: the
    cached index files are used.
    """
    request = _request(
        "digests", stanzas, arch, statedir, packages=[[p.name, p.version, p.arch] for p in packages]
    )
    reply = ask_child(request, reporter)
    return IndexDigests(sha256=dict(reply["sha256"]), index_date=reply["index_date"])


def resolve_layer(
    stanzas: Sequence[str],
    *,
    status_file: Path,
    arch: str,
    statedir: Path,
    install: Sequence[str],
    remove: Sequence[str] = (),
    local_debs: Sequence[Path] = (),
    replace_local: Sequence[Path] = (),
    replace: Sequence[str] = (),
    allow_inactive: bool = False,
    recommends: bool = False,
    refresh: bool = True,
    cachedir: Path | None = None,
    reporter: Reporter | None = None,
) -> LayerPlan:
    """What installing `install` and `local_debs` and removing `remove` on a base does.

    The base is the dpkg database whose `status_file` is given (a base
    commit's `usr/share/dpkg/database/status`). Requested packages come with
    their dependencies (Recommends only when `recommends`, as rpm-ostree layers
    minimally) from `stanzas`; local .deb files take part in the resolution as
    if they came from a source. No base package may change except by `remove`:
    a request that would upgrade, downgrade or remove one is a ResolveError
    naming both versions. A requested package already in the base is an error,
    or an inactive request with `allow_inactive`.

    `replace_local` are .deb files that replace the base package of the same
    name by their version (override replace); a package that is not in the
    base is an error, and so is one of the base's own version (unless
    `allow_inactive`: then the replacement is inactive and left out).
    `replace` are NAME or NAME=VERSION: the base package NAME replaced by the
    version of `stanzas` apt would choose when it is newer than the base's, or
    by VERSION (remotereplace.py); inactive in the same cases.

    With `refresh`, the index files are brought up to date first (as
    resolve_tree does); without, cached ones are used and only missing ones
    fetched. With `cachedir`, `download_size` leaves out what is cached there.
    """
    _check_arch(arch)
    status = Path(status_file).absolute()
    if not status.is_file():
        raise ResolveError(f"the base commit has no dpkg status file at {status}")
    debs = [Path(deb).absolute() for deb in local_debs]
    replacements = [Path(deb).absolute() for deb in replace_local]
    for deb in [*debs, *replacements]:
        if not deb.is_file():
            raise ResolveError(f"{deb}: no such file")
    request = _request(
        "layer",
        stanzas,
        arch,
        statedir,
        status=str(status),
        install=list(install),
        remove=list(remove),
        local_debs=[str(deb) for deb in debs],
        replace_local=[str(deb) for deb in replacements],
        replace=list(replace),
        allow_inactive=allow_inactive,
        recommends=recommends,
        refresh=refresh,
    )
    plan = LayerPlan.from_json(ask_child(request, reporter)["plan"])
    plan.download_size = sum(
        pkg.size
        for pkg in plan.install
        if pkg.local_path is None and (cachedir is None or cached_package(pkg, cachedir) is None)
    )
    return plan


def fetch_packages(
    plan: LayerPlan,
    *,
    cachedir: Path,
    cache_only: bool = False,
    reporter: Reporter | None = None,
) -> list[Path]:
    """The .deb files of `plan.install`, in its order, downloaded into `cachedir` as needed.

    A cached file is used only when its size and sha256 match the plan's (which
    come from the signed index); anything else is downloaded again by
    libapt-pkg's acquire in the child, with the plan's APT configuration, and
    verified against the same sha256 before it enters the cache. Local .debs
    are used from where they are. With `cache_only`, a package that is not
    cached is an error instead of a download.
    """
    cachedir = Path(cachedir).absolute()
    paths: dict[int, Path] = {}
    missing: list[tuple[int, PlannedPackage]] = []
    for index, pkg in enumerate(plan.install):
        if pkg.local_path is not None:
            paths[index] = Path(pkg.local_path)
        elif (cached := cached_package(pkg, cachedir)) is not None:
            paths[index] = cached
        elif cache_only:
            raise FetchError(
                f'package "{pkg.name}" {pkg.version} is not in the cache (--cache-only)'
            )
        else:
            missing.append((index, pkg))
    if missing:
        request = {
            "op": "fetch",
            "statedir": plan.statedir,
            "cachedir": str(cachedir),
            "packages": [dataclasses.asdict(pkg) for _, pkg in missing],
        }
        reply = ask_child(request, reporter)
        for (index, _), path in zip(missing, reply["paths"], strict=True):
            paths[index] = Path(path)
    return [paths[index] for index in range(len(plan.install))]


def search_packages(
    stanzas: Sequence[str],
    terms: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    reporter: Reporter | None = None,
) -> list[tuple[str, str, str]]:
    """(name, version, summary) of the packages whose name or description has every term.

    Matching ignores case. The cached index files are used; missing ones are
    fetched first. Sorted by name.
    """
    _check_arch(arch)
    if not terms:
        raise ResolveError("search needs at least one term")
    request = _request("search", stanzas, arch, statedir, terms=list(terms))
    return [(name, ver, summary) for name, ver, summary in ask_child(request, reporter)["results"]]


def refresh_metadata(
    stanzas: Sequence[str],
    *,
    arch: str,
    statedir: Path,
    force: bool = False,
    reporter: Reporter | None = None,
) -> None:
    """Bring the index files of `stanzas` up to date; `force` drops the cached ones first."""
    request = _request("refresh", stanzas, arch, statedir, force=force)
    ask_child(request, reporter)
