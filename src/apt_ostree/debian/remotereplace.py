"""override replace NAME[=VERSION]: which version from the APT sources replaces a base package.

Runs in the resolver child only (see aptchild.py), with the base's dpkg status
and the sources' indexes in one cache.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from apt_ostree.errors import ResolveError

if TYPE_CHECKING:
    import apt_pkg

    from apt_ostree.debian.layerdebs import LocalRepo

_SPEC = re.compile(r"([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?(?:=([A-Za-z0-9.+~:-]+))?")


def parse_replacement(spec: str) -> tuple[str, str | None, str | None]:
    """`NAME[:ARCH][=VERSION]` -> (name, arch or None, version or None)."""
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ResolveError(f'invalid replacement "{spec}": expected NAME or NAME=VERSION')
    return match.group(1), match.group(2), match.group(3)


def _from_sources(ver: apt_pkg.Version, local: LocalRepo | None) -> bool:
    """Whether `ver` is in an index of the APT sources (not only in the dpkg status
    or in the index of this request's local .debs)."""
    import apt_pkg

    prefix = apt_pkg.uri_to_filename(local.uri) if local is not None else None
    return any(
        not pkgfile.not_source and not (prefix and Path(pkgfile.filename).name.startswith(prefix))
        for pkgfile, _ in ver.file_list
    )


def remote_replacement(
    cache: apt_pkg.Cache,
    policy: apt_pkg.Policy,
    spec: str,
    arch: str,
    *,
    removed: set[int],
    inactive_ok: bool,
    local: LocalRepo | None,
) -> tuple[apt_pkg.Package, apt_pkg.Version] | None:
    """The base package that `spec` names and the version of the sources that replaces it.

    NAME takes the version apt would choose (pins included) when it is newer
    than the base's; NAME=VERSION takes that version, older or newer. None when
    the replacement is inactive (the base has that version already, or the
    sources have nothing newer) and `inactive_ok`; an error otherwise, and for
    a package that is not in the base or a version that is not in the sources.
    """
    import apt_pkg

    name, pkgarch, version = parse_replacement(spec)
    try:
        pkg = cache[(name, pkgarch or arch)]
    except KeyError:
        pkg = None
    if pkg is None or pkg.current_ver is None:
        raise ResolveError(
            f'package "{name}" is not in the base commit: override replace only replaces '
            "base packages; use install to layer it"
        )
    if pkg.id in removed:
        raise ResolveError(f'package "{name}" is both removed from the base and replaced')
    current = pkg.current_ver
    if version is not None:
        found = [v for v in pkg.version_list if v.ver_str == version and _from_sources(v, local)]
        if not found:
            raise ResolveError(f'version {version} of package "{name}" is not in the APT sources')
        if found[0].id == current.id or version == current.ver_str:
            if inactive_ok:
                return None
            raise ResolveError(
                f'package "{name}" {version} is already the version in the base commit'
            )
        return pkg, found[0]
    candidate = policy.get_candidate_ver(pkg)  # type: ignore[attr-defined]  # not in the stubs
    if (
        candidate is None
        or candidate.id == current.id
        or not _from_sources(candidate, local)
        or apt_pkg.version_compare(candidate.ver_str, current.ver_str) <= 0
    ):
        if inactive_ok:
            return None
        raise ResolveError(
            f'the APT sources have no version of package "{name}" newer than {current.ver_str}'
            f" in the base commit; name one with {name}=VERSION"
        )
    return pkg, candidate
