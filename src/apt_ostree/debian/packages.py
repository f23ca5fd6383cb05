"""Package records shared by the resolver, the composer and the layering engine.

`PackageInfo` names an installed package as dpkg does; `PlannedPackage` and
`LayerPlan` are what a layer resolution answers: which .debs to install (and
where each comes from) and which base packages to remove.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class PackageInfo:
    """One package of a tree, as dpkg names it (arch is "all" for arch-independent ones)."""

    name: str
    version: str
    arch: str


class ResolverCrash(RuntimeError):
    """The resolver process died without an answer: a bug, shown with its traceback."""


@dataclass(frozen=True)
class PlannedPackage:
    """One package a layer installs, and where its .deb comes from.

    `uri` and `sha256` come from the signed index (for a local .deb: its own
    path and checksum); `filename` is its name in the download cache;
    `requested` says whether the user asked for it or it is a dependency;
    `replaces` is the base commit's version of a package that a local .deb
    replaces (override replace), None for a package the layer adds.
    """

    name: str
    version: str
    arch: str
    uri: str
    filename: str
    size: int
    sha256: str
    requested: bool
    local_path: str | None = None
    replaces: str | None = None


@dataclass
class LayerPlan:
    """What layering a request on a base commit installs and removes.

    `install` is sorted by name, `remove` (base packages taken out by
    override remove) too; `install` holds the replacements of base packages too
    (override replace: `replaces` set); `inactive` are requests already
    satisfied by the base (with --allow-inactive); `download_size` counts the
    bytes of `install` that are neither local nor in the download cache.
    `statedir` is the APT state the plan was resolved with: fetch_packages()
    downloads with its configuration.
    """

    install: list[PlannedPackage]
    remove: list[PackageInfo]
    inactive: list[str]
    download_size: int
    statedir: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerPlan:
        return cls(
            install=[PlannedPackage(**entry) for entry in data["install"]],
            remove=[PackageInfo(**entry) for entry in data["remove"]],
            inactive=list(data["inactive"]),
            download_size=int(data["download_size"]),
            statedir=str(data["statedir"]),
        )


@dataclass(frozen=True)
class LockedPackage:
    """A package pinned by a lockfile: this version (and architecture, and .deb) or nothing.

    `arch` and `sha256` are None when the lockfile leaves them open; a written
    lockfile always has both.
    """

    name: str
    version: str
    arch: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        arch = f" ({self.arch})" if self.arch else ""
        return f'"{self.name}" {self.version}{arch}'


@dataclass(frozen=True)
class IndexDigests:
    """What the signed indexes say of a resolved package set, for a lockfile.

    `sha256` is each package's .deb checksum by package name; `index_date` the
    newest `Date:` of the sources' Release files (seconds since the epoch), or
    None when no Release file has one.
    """

    sha256: dict[str, str]
    index_date: int | None
