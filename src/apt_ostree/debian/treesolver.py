"""The tree solver: the package set of a fresh tree, as mmdebstrap would install it.

Runs in the resolver child only (see aptchild.py): apt_pkg is imported there.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apt_ostree.debian.depends import (
    CONFLICTS,
    DEPENDS,
    conflict_targets,
    describe_dep,
    lookup_package,
    reachable,
)
from apt_ostree.debian.lockpins import locked_from_request, pin_locked, strict_problems
from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    import apt_pkg


@dataclass
class _Request:
    """One resolution: the caches, and why each package must be installed."""

    cache: apt_pkg.Cache
    depcache: apt_pkg.DepCache
    requested: list[apt_pkg.Package]
    essential: list[apt_pkg.Package]
    excluded: dict[str, apt_pkg.Package]
    # Locked packages whose locked version is not available: never installed.
    unavailable: dict[str, apt_pkg.Package] = dataclasses.field(default_factory=dict)

    def candidate(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        # A failed mark_install discards the DepCache's candidate; the policy
        # still knows which version would have been installed.
        cand = self.depcache.get_candidate_ver(pkg)
        policy = self.depcache.policy
        return cand if cand is not None else policy.get_candidate_ver(pkg)  # type: ignore[attr-defined]  # not in the stubs

    def marked(self) -> Iterator[apt_pkg.Package]:
        """The packages marked for installation, in cache order."""
        return (pkg for pkg in self.cache.packages if self.depcache.marked_install(pkg))

    def installs(self, ver: apt_pkg.Version) -> bool:
        """Whether exactly `ver` is marked for installation."""
        cand = self.candidate(ver.parent_pkg)
        return (
            cand is not None
            and cand.id == ver.id
            and bool(self.depcache.marked_install(ver.parent_pkg))
        )


def _essential_packages(
    cache: apt_pkg.Cache, depcache: apt_pkg.DepCache, arch: str
) -> list[apt_pkg.Package]:
    """The `Essential: yes` packages of `arch`, as mmdebstrap's essential variant has them."""
    return sorted(
        (
            pkg
            for pkg in cache.packages
            if pkg.essential
            and pkg.architecture == arch
            and depcache.get_candidate_ver(pkg) is not None
        ),
        key=lambda pkg: pkg.name,
    )


def _mark(req: _Request) -> None:
    import apt_pkg

    resolver = apt_pkg.ProblemResolver(req.depcache)
    with apt_pkg.ActionGroup(req.depcache):  # type: ignore[attr-defined]  # stubs lack __enter__
        # Protected before anything is marked: auto-install then chooses
        # other alternatives and never installs an excluded package.
        for pkg in [*req.excluded.values(), *req.unavailable.values()]:
            resolver.protect(pkg)
        for pkg in [*req.essential, *req.requested]:
            req.depcache.mark_install(pkg, True, True)
            # Protected after marking: a protected package cannot change mode,
            # so a later conflicting request cannot silently unmark it.
            resolver.protect(pkg)
    # On failure the explanation is built from the dependency data instead.
    with contextlib.suppress(apt_pkg.Error):
        resolver.resolve(True)


def _why(req: _Request, pkg: apt_pkg.Package) -> str:
    """Why `pkg` is part of the tree: requested, essential or needed by another package."""
    if any(p.id == pkg.id for p in req.requested):
        return "requested"
    if any(p.id == pkg.id for p in req.essential):
        return "essential"
    for other in req.marked():
        for group in _dependency_groups(req, other):
            if other.id != pkg.id and any(
                t.parent_pkg.id == pkg.id for dep in group for t in dep.all_targets()
            ):
                return f'required by "{other.name}"'
    return "required"


def _dependency_groups(req: _Request, pkg: apt_pkg.Package) -> list[list[apt_pkg.Dependency]]:
    """The or-groups of `pkg`'s candidate that must be satisfied (Recommends never break)."""
    cand = req.candidate(pkg)
    if cand is None:
        return []
    return [group for kind in DEPENDS for group in cand.depends_list.get(kind, [])]


def _conflict_message(
    req: _Request, pkg: apt_pkg.Package, field: str, other: apt_pkg.Package
) -> str:
    return (
        f'package "{pkg.name}" ({_why(req, pkg)}) {CONFLICTS[field]} '
        f'"{other.name}" ({_why(req, other)})'
    )


def _conflicts_of(req: _Request, pkg: apt_pkg.Package) -> str | None:
    """A conflict, in either direction, between `pkg` and a package marked for installation."""
    cand = req.candidate(pkg)
    if cand is None:
        return None
    for field, target in conflict_targets(cand):
        if req.installs(target):
            return _conflict_message(req, pkg, field, target.parent_pkg)
    for other in req.marked():
        other_cand = req.candidate(other)
        if other.id == pkg.id or other_cand is None:
            continue
        for field, target in conflict_targets(other_cand):
            if target.id == cand.id:
                return _conflict_message(req, other, field, pkg)
    return None


def _unsatisfied(req: _Request, pkg: apt_pkg.Package) -> str | None:
    """A dependency of `pkg` that the marked set does not satisfy, explained."""
    for group in _dependency_groups(req, pkg):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(req.installs(t) for t in targets):
            continue
        wanted = " | ".join(describe_dep(dep) for dep in group)
        providers = sorted({t.parent_pkg.name for t in targets})
        if providers and all(name in req.excluded for name in providers):
            return (
                f'package "{providers[0]}" is excluded by exclude-packages but required by '
                f'"{pkg.name}" (Depends: {wanted})'
            )
        if not targets:
            return f'package "{pkg.name}" depends on {wanted}, which is not available'
        return f'package "{pkg.name}" depends on {wanted}, which cannot be installed'
    return None


def _explain(req: _Request) -> list[str]:
    """Why the marked set is not a valid tree, one sentence per problem."""
    problems: list[str] = []
    for pkg in [*req.requested, *req.essential]:
        if pkg.name in req.excluded:
            problems.append(
                f'package "{pkg.name}" is excluded by exclude-packages but {_why(req, pkg)}'
            )
        elif not req.depcache.marked_install(pkg):
            reason = _conflicts_of(req, pkg) or _unsatisfied(req, pkg)
            problems.append(
                reason or f'package "{pkg.name}" ({_why(req, pkg)}) cannot be installed'
            )
    for pkg in req.marked():
        if req.depcache.is_inst_broken(pkg):
            reason = _unsatisfied(req, pkg) or _conflicts_of(req, pkg)
            problems.append(reason or f'package "{pkg.name}" has unmet dependencies')
    # One root cause is often found from both of its ends.
    return list(dict.fromkeys(problems))


def resolve_marked(request: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Mark the request in a fresh DepCache; return the installed set or raise ResolveError."""
    import apt_pkg

    arch = request["arch"]
    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    excluded = {}
    for name in request["exclude"]:
        with contextlib.suppress(KeyError):
            excluded[name] = cache[(name, arch)]
    locked = locked_from_request(request)
    # Pinned before the essential set is chosen: its candidates are the locked ones.
    unavailable = pin_locked(cache, depcache, locked, arch)
    req = _Request(
        cache=cache,
        depcache=depcache,
        requested=[lookup_package(cache, name, arch) for name in request["packages"]],
        essential=_essential_packages(cache, depcache, arch) if request["essential"] else [],
        excluded=excluded,
        unavailable={name: pkg for name, (pkg, _) in unavailable.items() if pkg is not None},
    )
    _mark(req)
    problems = _explain(req)
    if problems or any(req.depcache.marked_install(p) for p in req.unavailable.values()):
        # A locked version that is gone is the cause of whatever broke.
        raise ResolveError("; ".join([*(why for _, why in unavailable.values()), *problems]))
    installed = []
    for pkg in _needed(req, recommends=request["recommends"]):
        ver = req.candidate(pkg)
        assert ver is not None, pkg.name
        installed.append((pkg.name, ver.ver_str, ver.arch))
    if request.get("lock_strict") and (problems := strict_problems(sorted(installed), locked)):
        raise ResolveError("; ".join(problems))
    return sorted(installed)


def _needed(req: _Request, *, recommends: bool) -> list[apt_pkg.Package]:
    """The marked packages reachable from the essential and requested ones (see reachable)."""
    keep = reachable(
        [*req.essential, *req.requested],
        recommends=recommends,
        keeps=lambda pkg: bool(req.depcache.marked_install(pkg)),
        candidate=req.candidate,
        present=req.installs,
    )
    return [pkg for pkg in req.marked() if pkg.id in keep]
