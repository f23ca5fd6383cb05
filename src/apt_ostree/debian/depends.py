"""libapt-pkg's dependency data as both solvers read it: fields, conflicts, lookups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    import apt_pkg

# The fields that must hold for a package to be installable, and their names
# as written in a control file.
DEPENDS = ("PreDepends", "Depends")
FIELD_NAMES = {"PreDepends": "Pre-Depends"}
CONFLICTS = {"Conflicts": "conflicts with", "Breaks": "breaks"}


def lookup_package(cache: apt_pkg.Cache, name: str, arch: str) -> apt_pkg.Package:
    """The real package that `name` (maybe "name:arch", maybe virtual) stands for."""
    pkgname, _, pkgarch = name.partition(":")
    try:
        pkg = cache[(pkgname, pkgarch or arch)]
    except KeyError:
        raise ResolveError(
            f'package "{name}" is not available from the configured sources'
        ) from None
    if pkg.has_versions:
        return pkg
    providers = {ver.parent_pkg.name: ver.parent_pkg for _, _, ver in pkg.provides_list}
    if len(providers) == 1:
        # apt installs the only provider of a virtual package, and so do we.
        return next(iter(providers.values()))
    if providers:
        names = ", ".join(f'"{n}"' for n in sorted(providers))
        raise ResolveError(
            f'package "{name}" is virtual and provided by {names}; request one of them'
        )
    raise ResolveError(f'package "{name}" is not available from the configured sources')


def conflict_targets(ver: apt_pkg.Version) -> Iterator[tuple[str, apt_pkg.Version]]:
    """(field, version) for every version that `ver` conflicts with or breaks."""
    for field in CONFLICTS:
        for group in ver.depends_list.get(field, []):
            for dep in group:
                for target in dep.all_targets():
                    if target.parent_pkg.id != ver.parent_pkg.id:
                        yield field, target


def describe_dep(dep: apt_pkg.Dependency) -> str:
    if dep.target_ver:
        return f"{dep.target_pkg.name} ({dep.comp_type_deb} {dep.target_ver})"
    return dep.target_pkg.name
