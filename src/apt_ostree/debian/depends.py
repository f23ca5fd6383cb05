"""libapt-pkg's dependency data as both solvers read it: fields, conflicts, lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


def reachable(
    roots: Iterable[apt_pkg.Package],
    *,
    recommends: bool,
    keeps: Callable[[apt_pkg.Package], bool],
    candidate: Callable[[apt_pkg.Package], apt_pkg.Version | None],
    present: Callable[[apt_pkg.Version], bool],
) -> dict[int, apt_pkg.Package]:
    """The packages that `keeps` accepts and that `roots` reach through satisfied dependencies.

    The problem resolver can leave behind the dependencies of an alternative it
    gave up (linux-image's `initramfs-tools | linux-initramfs-tool` with dracut
    requested leaves initramfs-tools-core); apt would autoremove them, so a
    solver keeps only what this walk reaches. By package id.
    """
    kinds = (*DEPENDS, "Recommends") if recommends else DEPENDS
    keep: dict[int, apt_pkg.Package] = {}
    stack = list(roots)
    while stack:
        pkg = stack.pop()
        if pkg.id in keep or not keeps(pkg):
            continue
        keep[pkg.id] = pkg
        ver = candidate(pkg)
        if ver is None:
            continue
        for kind in kinds:
            for group in ver.depends_list.get(kind, []):
                target = next((t for dep in group for t in dep.all_targets() if present(t)), None)
                if target is not None:
                    stack.append(target.parent_pkg)
    return keep
