"""The package database of commits, from their `apt-ostree.packages` metadata.

No checkout: `apt-ostree compose` records (name, version, arch) of every
installed package in each commit, so listing and diffing packages is reading
two small variants.

Revisions (REV) are what `ostree` accepts, plus checksum prefixes:
a full checksum, a unique checksum prefix (4 hex digits or more), a ref or
`remote:ref` of the repository, and `REV^` for the parent.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.repo import CommitInfo
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.system.rollback import deployment_roles
from apt_ostree.system.sysroot import Sysroot

PACKAGES_KEY = "apt-ostree.packages"
BASE_KEY = "apt-ostree.base-checksum"
MIN_PREFIX = 4
HEX = re.compile(r"[0-9a-f]+")


class DbError(AptOstreeError):
    pass


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str

    @property
    def nevra(self) -> str:
        """One token for the package, as rpm-ostree prints NEVRAs: name_version_arch."""
        return f"{self.name}_{self.version}_{self.arch}"


@dataclass(frozen=True)
class Revision:
    """A commit, and how the user (or the default) named it."""

    desc: str
    checksum: str


def open_repo(path: Path) -> OSTree.Repo:
    return ostree_repo.open_repo(path)


def resolve_revision(repo: OSTree.Repo, rev: str) -> Revision:
    """`rev` as a commit checksum; DbError if it names none."""
    if HEX.fullmatch(rev) and MIN_PREFIX <= len(rev) < 64:
        try:
            _, commits = repo.list_commit_objects_starting_with(rev, None)
        except GLib.Error as e:
            raise DbError(f"cannot list commits: {e.message}") from e
        found = sorted({key.unpack()[0] for key in commits})
        if len(found) == 1:
            return Revision(rev, found[0])
        if len(found) > 1:
            raise DbError(f'ambiguous checksum prefix "{rev}": it matches {len(found)} commits')
    try:
        _, checksum = repo.resolve_rev(rev, True)
    except GLib.Error as e:
        raise DbError(f'invalid revision "{rev}": {e.message}') from e
    if not checksum:
        raise DbError(
            f'unknown revision "{rev}": not a commit checksum, checksum prefix or ref'
            " in the repository"
        )
    if not ostree_repo.commit_exists(repo, checksum):
        raise DbError(f'commit {checksum} ("{rev}") is not in the repository')
    return Revision(rev, str(checksum))


def is_revision(repo: OSTree.Repo, rev: str) -> bool:
    try:
        resolve_revision(repo, rev)
    except DbError:
        return False
    return True


def commit_packages(repo: OSTree.Repo, checksum: str) -> list[Package]:
    info = ostree_repo.read_commit(repo, checksum)
    packages = info.metadata.get(PACKAGES_KEY)
    if packages is None:
        raise DbError(
            f"commit {checksum} has no package list ({PACKAGES_KEY} metadata);"
            " it was not composed by apt-ostree"
        )
    return sorted(Package(*p) for p in packages)


def packages_of(info: CommitInfo) -> list[Package]:
    """The commit's package list; empty for a commit not composed by apt-ostree."""
    return sorted(Package(*p) for p in info.metadata.get(PACKAGES_KEY, []))


def base_checksum(repo: OSTree.Repo, checksum: str) -> str:
    """The base commit of a layered commit; the commit itself when not layered."""
    base = ostree_repo.read_commit(repo, checksum).metadata.get(BASE_KEY)
    return str(base) if base else checksum


def dpkg_db_version(packages: Iterable[Package]) -> str:
    """An identity of the package set: sha256 of the sorted `name_version_arch` lines.

    The same as, inside the tree:
    dpkg-query -W -f='${db:Status-Abbrev}${Package}_${Version}_${Architecture}\\n'
      | sed -n 's/^ii //p' | LC_ALL=C sort | sha256sum
    """
    lines = sorted(p.nevra.encode() + b"\n" for p in packages)
    return hashlib.sha256(b"".join(lines)).hexdigest()


def match_packages(packages: Sequence[Package], patterns: Sequence[str]) -> list[Package]:
    """Packages whose name, name:arch or name_version_arch matches a glob pattern."""
    if not patterns:
        return list(packages)
    return [
        p
        for p in packages
        if any(
            fnmatch.fnmatchcase(candidate, pattern)
            for pattern in patterns
            for candidate in (p.name, f"{p.name}:{p.arch}", p.nevra)
        )
    ]


# -- diff ---------------------------------------------------------------------

_apt_initialized = False


def compare_versions(a: str, b: str) -> int:
    """Debian version order (dpkg's), through libapt-pkg."""
    global _apt_initialized
    import apt_pkg

    if not _apt_initialized:
        # init_system() alone picks the Debian versioning system; init_config()
        # would read the host's /etc/apt, which has nothing to say here.
        apt_pkg.init_system()
        _apt_initialized = True
    result: int = apt_pkg.version_compare(a, b)
    return result


ADDED, REMOVED, UPGRADED, DOWNGRADED = 0, 1, 2, 3  # rpm-ostree's RpmOstreePackageDiffTypes


@dataclass
class PackageDiff:
    upgraded: list[tuple[Package, Package]] = field(default_factory=list)
    downgraded: list[tuple[Package, Package]] = field(default_factory=list)
    removed: list[Package] = field(default_factory=list)
    added: list[Package] = field(default_factory=list)
    # Names installed for several architectures: shown as name:arch.
    multiarch: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.upgraded or self.downgraded or self.removed or self.added)

    def summary(self) -> str:
        counts = [
            (len(self.upgraded), "upgraded"),
            (len(self.downgraded), "downgraded"),
            (len(self.removed), "removed"),
            (len(self.added), "added"),
        ]
        return ", ".join(f"{n} {what}" for n, what in counts if n) or "no package changes"

    def label(self, p: Package) -> str:
        return f"{p.name}:{p.arch}" if p.name in self.multiarch else p.name


def diff_packages(old: Sequence[Package], new: Sequence[Package]) -> PackageDiff:
    """What changed from `old` to `new`, keyed by (name, arch); a package whose
    only change is its architecture (all -> amd64) counts as modified."""
    old_by = {(p.name, p.arch): p for p in old}
    new_by = {(p.name, p.arch): p for p in new}
    removed = {k: p for k, p in old_by.items() if k not in new_by}
    added = {k: p for k, p in new_by.items() if k not in old_by}
    modified = [(old_by[k], new_by[k]) for k in old_by.keys() & new_by.keys()]
    modified = [(a, b) for a, b in modified if a.version != b.version]
    for name in {n for n, _ in removed}:
        gone = [k for k in removed if k[0] == name]
        came = [k for k in added if k[0] == name]
        if len(gone) == 1 and len(came) == 1:
            modified.append((removed.pop(gone[0]), added.pop(came[0])))
    diff = PackageDiff(removed=sorted(removed.values()), added=sorted(added.values()))
    for a, b in sorted(modified):
        downgrade = compare_versions(a.version, b.version) > 0
        (diff.downgraded if downgrade else diff.upgraded).append((a, b))
    for side in (old, new):
        seen: dict[str, set[str]] = {}
        for p in side:
            seen.setdefault(p.name, set()).add(p.arch)
        diff.multiarch |= {n for n, arches in seen.items() if len(arches) > 1}
    return diff


def diff_entries(diff: PackageDiff) -> list[tuple[str, int, Package | None, Package | None]]:
    """(name, type, previous, new) sorted by type then name, as rpm-ostree's pkgdiff."""
    entries: list[tuple[str, int, Package | None, Package | None]] = [
        *((a.name, UPGRADED, a, b) for a, b in diff.upgraded),
        *((a.name, DOWNGRADED, a, b) for a, b in diff.downgraded),
        *((p.name, REMOVED, p, None) for p in diff.removed),
        *((p.name, ADDED, None, p) for p in diff.added),
    ]

    return sorted(entries, key=lambda e: (e[1], e[0]))


def diff_to_json(diff: PackageDiff) -> dict[str, Any]:
    """The diff as plain data (what crosses the bus and what the CLI renders):
    packages as [name, version, arch]."""

    def p(pkg: Package) -> list[str]:
        return [pkg.name, pkg.version, pkg.arch]

    return {
        "upgraded": [[p(a), p(b)] for a, b in diff.upgraded],
        "downgraded": [[p(a), p(b)] for a, b in diff.downgraded],
        "removed": [p(x) for x in diff.removed],
        "added": [p(x) for x in diff.added],
        "multiarch": sorted(diff.multiarch),
    }


def diff_commit_infos(old: CommitInfo, new: CommitInfo) -> PackageDiff:
    return diff_packages(packages_of(old), packages_of(new))


def diff_commits(repo: OSTree.Repo, old: str, new: str) -> PackageDiff:
    return diff_packages(commit_packages(repo, old), commit_packages(repo, new))


# -- default revisions from the sysroot's deployments ---------------------------------


def _deployment_revision(repo: OSTree.Repo, desc: str, d: DeploymentInfo, base: bool) -> Revision:
    return Revision(desc, base_checksum(repo, d.checksum) if base else d.checksum)


def current_revision(sysroot: Sysroot, repo: OSTree.Repo, *, base: bool = False) -> Revision:
    """The booted deployment; offline, the default deployment."""
    roles = deployment_roles(sysroot.deployments(), sysroot.booted)
    desc = "booted deployment" if sysroot.booted else "default deployment"
    return _deployment_revision(repo, desc, roles.current, base)


def default_diff(
    sysroot: Sysroot, repo: OSTree.Repo, *, base: bool = False
) -> tuple[Revision, Revision]:
    """rpm-ostree's `db diff` without revisions: booted -> pending if there is a
    pending deployment, else rollback -> booted. Offline, the default deployment
    plays the booted one: rollback -> default."""
    roles = deployment_roles(sysroot.deployments(), sysroot.booted)
    current = "booted deployment" if sysroot.booted else "default deployment"
    if roles.pending:
        return (
            _deployment_revision(repo, current, roles.current, base),
            _deployment_revision(repo, "pending deployment", roles.pending[0], base),
        )
    if roles.rollback:
        return (
            _deployment_revision(repo, "rollback deployment", roles.rollback[0], base),
            _deployment_revision(repo, current, roles.current, base),
        )
    raise DbError("no pending or rollback deployment to diff against")
