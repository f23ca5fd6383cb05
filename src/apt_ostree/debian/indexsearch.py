"""Package search over the index files, in the resolver child."""

from __future__ import annotations

from collections.abc import Sequence


def search_cache(terms: Sequence[str], arch: str) -> list[tuple[str, str, str]]:
    """(name, version, summary) of the candidates whose name or description has every term.

    The index files are read directly (15 times faster than a record lookup
    per package); a stanza counts when it is its package's candidate version.
    Debian's own archive puts only the summary into its Packages files (the
    long descriptions are in Translation files, which are not fetched).
    """
    import apt_pkg

    cache = apt_pkg.Cache(None)
    depcache = apt_pkg.DepCache(cache)
    wanted = [term.casefold() for term in terms]
    found: dict[str, tuple[str, str, str]] = {}
    for pkgfile in cache.file_list:  # type: ignore[attr-defined]  # not in the stubs
        if pkgfile.index_type != "Debian Package Index":
            continue
        with apt_pkg.TagFile(pkgfile.filename) as tags:
            for section in tags:
                name, description = section["Package"], section.get("Description", "")
                text = f"{name}\n{description}".casefold()
                if not all(term in text for term in wanted):
                    continue
                pkg_arch = section.get("Architecture", arch)
                try:
                    pkg = cache[(name, arch if pkg_arch == "all" else pkg_arch)]
                except KeyError:
                    continue
                cand = depcache.get_candidate_ver(pkg)
                if cand is not None and cand.ver_str == section.get("Version"):
                    found[name] = (name, cand.ver_str, description.partition("\n")[0])
    return sorted(found.values())
