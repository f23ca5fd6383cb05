"""What the CLI reads, as plain data: apt-ostreed answers these over the bus and
the in-process path calls them directly, so both print the same.

None of them takes the sysroot lock or changes a deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apt_ostree.requests import RequestError

if TYPE_CHECKING:
    from apt_ostree.ostree import OSTree
    from apt_ostree.system.db import Revision
    from apt_ostree.system.sysroot import Sysroot


def kernel_args(
    sysroot: Sysroot, osname: str | None, *, index: int | None, import_proc_cmdline: bool
) -> str:
    """The arguments `apt-ostree kargs` prints without a change."""
    from apt_ostree.system.kargs import show_kargs

    if import_proc_cmdline and index is not None:
        raise RequestError("--import-proc-cmdline and --deploy-index cannot be used together")
    kargs = show_kargs(
        sysroot, index=index, import_proc_cmdline=import_proc_cmdline,
        osname=None if index is not None else osname,
    )  # fmt: skip
    return str(kargs)


def search(sysroot: Sysroot, osname: str | None, terms: list[str], reporter: Any) -> list[Any]:
    """[name, version, summary] of every package that matches all `terms`."""
    from apt_ostree.system.search import search as search_packages

    if not terms:
        raise RequestError("search: give at least one term")
    found = search_packages(sysroot, osname or sysroot.default_osname(), terms, reporter=reporter)
    return [[r.name, r.version, r.summary] for r in found]


def _revision(rev: Revision) -> dict[str, str]:
    return {"desc": rev.desc, "checksum": rev.checksum}


class DbSource:
    """The repository revisions are looked up in, and the sysroot whose deployments
    give the default revisions (opened only when a default is needed)."""

    def __init__(self, repo: OSTree.Repo, open_sysroot: Callable[[], Sysroot]) -> None:
        self.repo = repo
        self._open_sysroot = open_sysroot

    @property
    def sysroot(self) -> Sysroot:
        return self._open_sysroot()


def db_list(source: DbSource, args: list[str]) -> list[dict[str, Any]]:
    """Arguments are revisions up to the first that is not one (as rpm-ostree), then
    package globs; without revisions, the booted (offline: default) deployment."""
    from apt_ostree.system.db import (
        commit_packages,
        current_revision,
        is_revision,
        match_packages,
        resolve_revision,
    )

    revs = []
    patterns: list[str] = []
    for i, arg in enumerate(args):
        if not is_revision(source.repo, arg):
            patterns = args[i:]
            break
        revs.append(resolve_revision(source.repo, arg))
    if not revs:
        revs = [current_revision(source.sysroot, source.repo)]
    return [
        {
            **_revision(rev),
            "packages": [
                p.nevra
                for p in match_packages(commit_packages(source.repo, rev.checksum), patterns)
            ],
        }
        for rev in revs
    ]


def db_diff(
    source: DbSource,
    from_rev: str | None,
    to_rev: str | None,
    *,
    base: bool,
    changelogs: bool = False,
) -> dict[str, Any]:
    from apt_ostree.system.db import (
        current_revision,
        default_diff,
        diff_commits,
        diff_to_json,
        resolve_revision,
    )

    if to_rev is not None and from_rev is None:
        raise RequestError("db diff: a TO revision needs a FROM revision")
    if to_rev is not None and from_rev is not None:
        old = resolve_revision(source.repo, from_rev)
        new = resolve_revision(source.repo, to_rev)
    elif from_rev is not None:
        new = resolve_revision(source.repo, from_rev)
        old = current_revision(source.sysroot, source.repo, base=base)
    else:
        old, new = default_diff(source.sysroot, source.repo, base=base)
    diff = diff_commits(source.repo, old.checksum, new.checksum)
    found: dict[str, Any] = {
        "from": _revision(old),
        "to": _revision(new),
        "diff": diff_to_json(diff),
    }
    if changelogs:
        from apt_ostree.system.changelog import changelog_since

        # name -> the new version's entries since the old one (upgrades only: a
        # downgrade's changelog has nothing newer than the old version)
        found["changelogs"] = {
            a.name: changelog_since(source.repo, new.checksum, a.name, a.version)
            for a, _ in diff.upgraded
        }
    return found


def db_version(source: DbSource, revs: list[str]) -> list[dict[str, Any]]:
    from apt_ostree.system.db import (
        commit_packages,
        current_revision,
        dpkg_db_version,
        resolve_revision,
    )

    resolved = [resolve_revision(source.repo, rev) for rev in revs]
    if not resolved:
        resolved = [current_revision(source.sysroot, source.repo)]
    return [
        {
            **_revision(rev),
            "dpkgdbv": dpkg_db_version(commit_packages(source.repo, rev.checksum)),
        }
        for rev in resolved
    ]
