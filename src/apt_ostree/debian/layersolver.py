"""The layer solver: what a request layered on an installed base commit installs and removes.

No base package may change except by override remove or replace; every
problem is explained in one sentence naming both sides. Runs in the resolver
child only (see aptchild.py): apt_pkg is imported there.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.debian.depends import (
    CONFLICTS,
    DEPENDS,
    FIELD_NAMES,
    conflict_targets,
    describe_dep,
    lookup_package,
    reachable,
)
from apt_ostree.debian.fetch import cache_name
from apt_ostree.debian.indexes import archive_location
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.debian.remotereplace import remote_replacement
from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    import apt_pkg

    from apt_ostree.debian.layerdebs import LocalDeb, LocalRepo


@dataclass
class _Layer:
    """One layer resolution: the caches, the base, and what the request asks of it."""

    cache: apt_pkg.Cache
    depcache: apt_pkg.DepCache
    base: dict[int, apt_pkg.Package]
    removed: dict[int, apt_pkg.Package]
    requested: dict[int, apt_pkg.Package]
    chosen: dict[int, apt_pkg.Version]
    # Base packages that a local .deb or the sources replace (override replace);
    # also in `requested`.
    replaced: dict[int, apt_pkg.Package] = dataclasses.field(default_factory=dict)
    # Those of `replaced` whose new version comes from the sources.
    remote: set[int] = dataclasses.field(default_factory=set)

    def label(self, pkg: apt_pkg.Package) -> str:
        """How a message names where a replacement of `pkg` comes from."""
        return "" if pkg.id in self.remote else " (local)"

    def candidate(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        """The version the layer would install of `pkg`: a local .deb's, else apt's choice."""
        if pkg.id in self.chosen:
            return self.chosen[pkg.id]
        cand = self.depcache.get_candidate_ver(pkg)
        policy = self.depcache.policy
        return cand if cand is not None else policy.get_candidate_ver(pkg)  # type: ignore[attr-defined]  # not in the stubs

    def changes(self, pkg: apt_pkg.Package) -> bool:
        """Whether `pkg` is marked to be installed, upgraded or downgraded."""
        depcache = self.depcache
        return bool(
            depcache.marked_install(pkg)
            or depcache.marked_upgrade(pkg)
            or depcache.marked_downgrade(pkg)
        )

    def in_base(self, pkg: apt_pkg.Package) -> bool:
        """Whether `pkg` is in the base commit and stays (not removed by override remove)."""
        return pkg.id in self.base and pkg.id not in self.removed

    def after(self, pkg: apt_pkg.Package) -> apt_pkg.Version | None:
        """The version of `pkg` in the layered tree, None when it is not there."""
        if self.changes(pkg):
            return self.candidate(pkg)
        if self.depcache.marked_delete(pkg) or not self.in_base(pkg):
            return None
        return pkg.current_ver

    def present(self, ver: apt_pkg.Version) -> bool:
        after = self.after(ver.parent_pkg)
        return after is not None and after.id == ver.id

    def added(self) -> Iterator[apt_pkg.Package]:
        """The packages the layer adds, in cache order."""
        return (
            pkg
            for pkg in self.cache.packages
            if self.depcache.marked_install(pkg) and pkg.id not in self.base
        )

    def why(self, pkg: apt_pkg.Package) -> str:
        if pkg.id in self.requested:
            return "requested"
        for other in self.added():
            ver = self.candidate(other)
            if (
                other.id != pkg.id
                and ver is not None
                and any(
                    t.parent_pkg.id == pkg.id
                    for kind in DEPENDS
                    for group in ver.depends_list.get(kind, [])
                    for dep in group
                    for t in dep.all_targets()
                )
            ):
                return f'required by "{other.name}"'
        return "required"

    def describe(self, pkg: apt_pkg.Package) -> str:
        """`"name" 1.0 in the base commit` for a base package, `"name" (why)` for an added one."""
        if self.in_base(pkg) and not self.changes(pkg):
            return f'"{pkg.name}" {pkg.current_ver.ver_str} in the base commit'
        return f'"{pkg.name}" ({self.why(pkg)})'


def _groups(ver: apt_pkg.Version) -> Iterator[tuple[str, list[apt_pkg.Dependency]]]:
    for kind in DEPENDS:
        for group in ver.depends_list.get(kind, []):
            yield kind, group


def _layer_conflict(
    layer: _Layer, pkg: apt_pkg.Package, ver: apt_pkg.Version, desc: str
) -> str | None:
    """A conflict, in either direction, between `ver` and a package of the layered tree.

    `desc` names `ver` in the message (`"name" (requested)`).
    """
    for field, target in conflict_targets(ver):
        if layer.present(target):
            return f"package {desc} {CONFLICTS[field]} {layer.describe(target.parent_pkg)}"
    others = [*(p for p in layer.base.values() if layer.in_base(p)), *layer.added()]
    for other in others:
        other_ver = layer.after(other)
        if other.id == pkg.id or other_ver is None:
            continue
        for field, target in conflict_targets(other_ver):
            if target.id == ver.id:
                return f"package {layer.describe(other)} {CONFLICTS[field]} {desc}"
    return None


def _needs_base_change(layer: _Layer, desc: str, group: list[apt_pkg.Dependency]) -> str | None:
    """When a base package's version cannot satisfy `group`: say which and why."""
    for dep in group:
        target = dep.target_pkg
        if layer.in_base(target) and target.current_ver is not None:
            wanted = f" ({dep.comp_type_deb} {dep.target_ver})" if dep.target_ver else ""
            return (
                f'package {desc} needs "{target.name}"{wanted} but the base commit has '
                f"{target.name} {target.current_ver.ver_str}; "
                "use override replace to change a base package"
            )
    return None


def _layer_unsatisfied(
    layer: _Layer, ver: apt_pkg.Version, desc: str, seen: set[int]
) -> str | None:
    """A dependency of `ver` that the layered tree cannot satisfy, explained."""
    for _, group in _groups(ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        wanted = " | ".join(describe_dep(dep) for dep in group)
        if reason := _needs_base_change(layer, desc, group):
            return reason
        gone = sorted({t.parent_pkg.name for t in targets if t.parent_pkg.id in layer.removed})
        if gone and all(t.parent_pkg.id in layer.removed for t in targets):
            return (
                f'package {desc} needs "{gone[0]}", '
                "which override remove takes out of the base commit"
            )
        if not targets:
            return f"package {desc} depends on {wanted}, which is not available"
        # The dependency's own problem (a conflict, a base version) is the cause.
        for target in targets:
            tpkg = target.parent_pkg
            if tpkg.id in seen or layer.in_base(tpkg):
                continue
            seen.add(tpkg.id)
            inner = f'"{tpkg.name}" (required by "{ver.parent_pkg.name}")'
            reason = _layer_conflict(layer, tpkg, target, inner) or _layer_unsatisfied(
                layer, target, inner, seen
            )
            if reason:
                return reason
        return f"package {desc} depends on {wanted}, which cannot be installed"
    return None


def _explain_added(layer: _Layer, pkg: apt_pkg.Package) -> str:
    ver = layer.candidate(pkg)
    desc = f'"{pkg.name}" ({layer.why(pkg)})'
    if ver is None:
        return f"package {desc} has no installable version"
    return (
        _layer_conflict(layer, pkg, ver, desc)
        or _layer_unsatisfied(layer, ver, desc, {pkg.id})
        or f"package {desc} cannot be installed"
    )


def _explain_base_change(layer: _Layer, pkg: apt_pkg.Package) -> str:
    """Why the resolution would change base package `pkg`, which only overrides may do."""
    current = pkg.current_ver
    for other in layer.added():
        ver = layer.candidate(other)
        if ver is None:
            continue
        desc = f'"{other.name}" ({layer.why(other)})'
        for _, group in _groups(ver):
            if any(dep.target_pkg.id == pkg.id for dep in group) and not any(
                t.id == current.id for dep in group for t in dep.all_targets()
            ):
                reason = _needs_base_change(layer, desc, group)
                if reason:
                    return reason
        for field, target in conflict_targets(ver):
            if target.id == current.id:
                return (
                    f'package {desc} {CONFLICTS[field]} "{pkg.name}" {current.ver_str} '
                    "in the base commit"
                )
    if layer.depcache.marked_delete(pkg):
        return (
            f'the request would remove "{pkg.name}" {current.ver_str} from the base commit; '
            "use override remove to remove a base package"
        )
    new = layer.candidate(pkg)
    return (
        f'the request would change "{pkg.name}" from {current.ver_str} to '
        f"{new.ver_str if new else '?'} in the base commit; "
        "use override replace to change a base package"
    )


def _removal_dependency(layer: _Layer, pkg: apt_pkg.Package) -> tuple[str, str] | None:
    """(removed package, "Depends: ...") when `pkg` needs a package override remove takes out."""
    for kind, group in _groups(pkg.current_ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        gone = sorted({t.parent_pkg.name for t in targets if t.parent_pkg.id in layer.removed})
        if gone:
            wanted = " | ".join(describe_dep(dep) for dep in group)
            return gone[0], f"{FIELD_NAMES.get(kind, kind)}: {wanted}"
    return None


def _replacement_dependency(layer: _Layer, pkg: apt_pkg.Package) -> str | None:
    """Why base package `pkg` breaks when a package it needs is replaced, or None."""
    for kind, group in _groups(pkg.current_ver):
        targets = [t for dep in group for t in dep.all_targets()]
        if any(layer.present(t) for t in targets):
            continue
        for dep in group:
            target = dep.target_pkg
            if target.id in layer.replaced:
                new = layer.candidate(target)
                wanted = " | ".join(describe_dep(d) for d in group)
                return (
                    f'package "{target.name}" {new.ver_str if new else "?"}{layer.label(target)} '
                    "cannot "
                    f'replace {target.current_ver.ver_str} in the base commit: "{pkg.name}" '
                    f"{pkg.current_ver.ver_str} in the base commit depends on it "
                    f"({FIELD_NAMES.get(kind, kind)}: {wanted})"
                )
    for field, conflicting in conflict_targets(pkg.current_ver):
        if conflicting.parent_pkg.id in layer.replaced and layer.present(conflicting):
            return (
                f'package "{conflicting.parent_pkg.name}" {conflicting.ver_str}'
                f"{layer.label(conflicting.parent_pkg)} cannot "
                f'replace the base commit\'s version: "{pkg.name}" {pkg.current_ver.ver_str} '
                f"in the base commit {CONFLICTS[field]} it"
            )
    return None


def _removal_message(removed: str, dependents: list[tuple[apt_pkg.Package, str]]) -> str:
    """Why `removed` cannot be removed: the base packages that depend on it."""
    if len(dependents) == 1:
        pkg, why = dependents[0]
        return (
            f'package "{removed}" cannot be removed: "{pkg.name}" {pkg.current_ver.ver_str} '
            f"in the base commit depends on it ({why})"
        )
    named = ", ".join(f'"{pkg.name}" {pkg.current_ver.ver_str}' for pkg, _ in dependents[:3])
    more = f" and {len(dependents) - 3} more" if len(dependents) > 3 else ""
    return f'package "{removed}" cannot be removed: {named}{more} in the base commit depend on it'


def _base_package(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package:
    """The installed package that `name` (maybe "name:arch") names, for override remove."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        pkg = None
    if pkg is None or pkg.current_ver is None:
        raise ResolveError(f'package "{name}" is not in the base commit')
    if pkg.essential:
        # dpkg would refuse it halfway through the transaction.
        raise ResolveError(f'package "{name}" is essential and cannot be removed')
    return pkg


def _installed_provider(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package | None:
    """The base package that `name` is, or that provides it when it is virtual."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        return None
    if pkg.current_ver is not None:
        return pkg
    if not pkg.has_versions:
        for _, _, ver in pkg.provides_list:
            provider = ver.parent_pkg
            if provider.current_ver is not None and provider.current_ver.id == ver.id:
                return provider
    return None


def _local_version(
    cache: apt_pkg.Cache, deb: LocalDeb, arch: str, repo: LocalRepo
) -> tuple[apt_pkg.Package, apt_pkg.Version]:
    import apt_pkg

    prefix = apt_pkg.uri_to_filename(repo.uri)
    pkg = cache[(deb.name, arch if deb.arch == "all" else deb.arch)]
    for ver in pkg.version_list:
        if ver.ver_str == deb.version and any(
            Path(pkgfile.filename).name.startswith(prefix) for pkgfile, _ in ver.file_list
        ):
            return pkg, ver
    raise AssertionError(f"{deb.path} is missing from its local index")


def _mark_layer(layer: _Layer) -> None:
    import apt_pkg

    resolver = apt_pkg.ProblemResolver(layer.depcache)
    with apt_pkg.ActionGroup(layer.depcache):  # type: ignore[attr-defined]  # stubs lack __enter__
        # Protected before anything is marked: auto-install may then add
        # packages but never upgrade, downgrade or remove a base one.
        for pkg in layer.base.values():
            if pkg.id in layer.removed:
                layer.depcache.mark_delete(pkg, False)
            resolver.protect(pkg)
        for pkg in layer.requested.values():
            if pkg.id in layer.chosen:
                layer.depcache.set_candidate_ver(pkg, layer.chosen[pkg.id])
            layer.depcache.mark_install(pkg, True, True)
            resolver.protect(pkg)
    # On failure the explanation is built from the dependency data instead.
    with contextlib.suppress(apt_pkg.Error):
        resolver.resolve(True)


def _layer_problems(layer: _Layer) -> list[str]:
    depcache = layer.depcache
    problems = []
    for pkg in layer.requested.values():
        if not layer.changes(pkg) or depcache.is_inst_broken(pkg):
            problems.append(_explain_added(layer, pkg))
    for pkg in layer.added():
        if depcache.is_inst_broken(pkg):
            problems.append(_explain_added(layer, pkg))
    # A base package broken otherwise conflicts with an added one, which said so.
    explained = bool(problems)
    # A removal can break hundreds of base packages: one sentence per removal.
    dependents: dict[str, list[tuple[apt_pkg.Package, str]]] = {}
    for pkg in sorted(layer.base.values(), key=lambda pkg: pkg.name):
        if pkg.id in layer.removed or pkg.id in layer.replaced:
            continue
        if depcache.marked_delete(pkg) or layer.changes(pkg):
            problems.append(_explain_base_change(layer, pkg))
        elif depcache.is_inst_broken(pkg) and not depcache.is_now_broken(pkg):
            if needed := _removal_dependency(layer, pkg):
                dependents.setdefault(needed[0], []).append((pkg, needed[1]))
                continue
            if reason := _replacement_dependency(layer, pkg):
                problems.append(reason)
                continue
            if explained:
                continue
            desc = f'"{pkg.name}" {pkg.current_ver.ver_str} in the base commit'
            reason = _layer_conflict(layer, pkg, pkg.current_ver, desc)
            problems.append(reason or f"package {desc} would be broken by the request")
    problems.extend(_removal_message(name, pkgs) for name, pkgs in sorted(dependents.items()))
    # One root cause is often found from both of its ends.
    return list(dict.fromkeys(problems))


def _layer_needed(layer: _Layer, *, recommends: bool) -> list[apt_pkg.Package]:
    """The added packages reachable from the requested ones (see reachable), by name."""
    keep = reachable(
        layer.requested.values(),
        recommends=recommends,
        keeps=lambda pkg: (
            layer.changes(pkg) and (pkg.id not in layer.base or pkg.id in layer.replaced)
        ),
        candidate=layer.candidate,
        present=layer.present,
    )
    return sorted(keep.values(), key=lambda pkg: (pkg.name, pkg.architecture))


def _replacement_is_active(
    pkg: apt_pkg.Package, deb: LocalDeb, removed: dict[int, apt_pkg.Package], inactive_ok: bool
) -> bool:
    """Whether local `deb` replaces base package `pkg` (override replace); errors if it cannot."""
    if pkg.current_ver is None:
        raise ResolveError(
            f'package "{deb.name}" is not in the base commit: override replace only replaces '
            "base packages; use install to layer it"
        )
    if pkg.id in removed:
        raise ResolveError(f'package "{deb.name}" is both removed from the base and replaced')
    if pkg.current_ver.ver_str == deb.version:
        if inactive_ok:
            return False
        raise ResolveError(
            f'package "{deb.name}" {deb.version} is already the version in the base commit'
        )
    return True


def resolve_layer_marked(request: dict[str, Any], local: LocalRepo | None) -> dict[str, Any]:
    """Resolve a layer on the base in Dir::State::status; the plan, or ResolveError."""
    import apt_pkg

    arch = request["arch"]
    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    base = {pkg.id: pkg for pkg in cache.packages if pkg.current_ver is not None}
    removed: dict[int, apt_pkg.Package] = {}
    for name in request["remove"]:
        pkg = _base_package(cache, name, arch)
        removed[pkg.id] = pkg
    requested: dict[int, apt_pkg.Package] = {}
    chosen: dict[int, apt_pkg.Version] = {}
    inactive: list[str] = []

    def already_in_base(name: str, installed: apt_pkg.Package, local_version: str | None) -> None:
        if installed.id in removed:
            raise ResolveError(f'package "{name}" is both removed from the base and requested')
        current = installed.current_ver.ver_str
        if local_version is not None and local_version != current:
            raise ResolveError(
                f'package "{name}" {local_version} (local) would replace "{installed.name}" '
                f"{current} in the base commit; use override replace to change a base package"
            )
        if name not in inactive:
            inactive.append(name)

    for name in request["install"]:
        installed = _installed_provider(cache, name, arch)
        if installed is not None:
            already_in_base(name, installed, None)
            continue
        pkg = lookup_package(cache, name, arch)
        requested[pkg.id] = pkg
    replacing = set(request.get("replace_local", []))
    replaced: dict[int, apt_pkg.Package] = {}
    for deb in local.debs if local else []:
        assert local is not None
        pkg, local_ver = _local_version(cache, deb, arch, local)
        if deb.path in replacing:
            if _replacement_is_active(pkg, deb, removed, request["allow_inactive"]):
                requested[pkg.id] = pkg
                chosen[pkg.id] = local_ver
                replaced[pkg.id] = pkg
            continue
        if pkg.current_ver is not None:
            already_in_base(deb.name, pkg, deb.version)
            continue
        requested[pkg.id] = pkg
        chosen[pkg.id] = local_ver
    remote: set[int] = set()
    for spec in request.get("replace", []):
        found = remote_replacement(
            cache, depcache.policy, spec, arch, removed=set(removed),
            inactive_ok=request["allow_inactive"], local=local,
        )  # fmt: skip
        if found is None:
            continue
        pkg, new_ver = found
        if pkg.id in replaced:
            raise ResolveError(f'package "{pkg.name}" is replaced twice')
        requested[pkg.id] = replaced[pkg.id] = pkg
        chosen[pkg.id] = new_ver
        remote.add(pkg.id)
    if inactive and not request["allow_inactive"]:
        if len(inactive) == 1:
            raise ResolveError(
                f'package "{inactive[0]}" is already in the base commit; '
                "use --allow-inactive to request it anyway"
            )
        names = ", ".join(f'"{name}"' for name in inactive)
        raise ResolveError(
            f"packages {names} are already in the base commit; "
            "use --allow-inactive to request them anyway"
        )
    layer = _Layer(cache, depcache, base, removed, requested, chosen, replaced, remote)
    _mark_layer(layer)
    if problems := _layer_problems(layer):
        raise ResolveError("; ".join(problems))

    sources = apt_pkg.SourceList()
    sources.read_main_list()
    records = apt_pkg.PackageRecords(cache)
    by_name = {deb.name: deb for deb in local.debs} if local else {}
    install = []
    for pkg in _layer_needed(layer, recommends=request["recommends"]):
        ver = layer.candidate(pkg)
        assert ver is not None, pkg.name
        entry: dict[str, Any] = {
            "name": pkg.name,
            "version": ver.ver_str,
            "arch": ver.arch,
            "filename": cache_name(pkg.name, ver.ver_str, ver.arch),
            "requested": pkg.id in requested,
            "replaces": pkg.current_ver.ver_str if pkg.id in replaced else None,
        }
        if pkg.id in chosen and pkg.id not in remote:
            deb = by_name[pkg.name]
            entry |= {
                "uri": Path(deb.path).as_uri(),
                "size": deb.size,
                "sha256": deb.sha256,
                "local_path": deb.path,
            }
        else:
            uri, sha256 = archive_location(ver, sources, records, local)
            entry |= {"uri": uri, "size": ver.size, "sha256": sha256, "local_path": None}
        install.append(entry)
    remove = sorted(
        PackageInfo(pkg.name, pkg.current_ver.ver_str, pkg.current_ver.arch)
        for pkg in removed.values()
    )
    return {
        "install": install,
        "remove": [dataclasses.asdict(info) for info in remove],
        "inactive": sorted(set(inactive)),
        "download_size": sum(e["size"] for e in install if e["local_path"] is None),
        "statedir": request["statedir"],
    }
