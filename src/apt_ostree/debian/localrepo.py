"""A flat APT repository made from local .deb files, as a source for one compose.

The treefile's `local-packages` (apt-ostree's own .deb, for instance) take part
in the resolution and in mmdebstrap's installation as if they came from a
source: their control data is indexed in a flat repository (`Suites: ./`)
whose stanza is added to the compose's sources. The files are the user's own,
named in the treefile, so the stanza says `Trusted: yes` and there is no key.
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.debian.fetch import sha256_file
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.errors import CommandError, ResolveError
from apt_ostree.run import run


@dataclass(frozen=True)
class LocalDeb:
    """A local .deb file, as its control data names it."""

    path: Path
    name: str
    version: str
    arch: str
    control: str

    @property
    def package(self) -> PackageInfo:
        return PackageInfo(self.name, self.version, self.arch)


@dataclass(frozen=True)
class LocalRepository:
    """A flat repository in `path`; `stanza` is its deb822 source."""

    path: Path
    stanza: str
    debs: list[LocalDeb]


def read_deb(path: Path) -> LocalDeb:
    """The control data of `path`; ResolveError when it is not a .deb package."""
    try:
        control = run(["dpkg-deb", "--field", path], what="dpkg-deb").stdout
    except CommandError as e:
        detail = e.output.strip().splitlines()[-1:] or [str(e)]
        raise ResolveError(f"{path} is not a valid .deb package: {detail[0]}") from None
    fields: dict[str, str] = {}
    for line in control.splitlines():
        if line and not line[0].isspace():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    missing = [key for key in ("Package", "Version", "Architecture") if not fields.get(key)]
    if missing:
        raise ResolveError(f"{path} is not a valid .deb package: no {missing[0]} field")
    return LocalDeb(
        path=path,
        name=fields["Package"],
        version=fields["Version"],
        arch=fields["Architecture"],
        control=control.strip("\n"),
    )


def read_debs(paths: Sequence[Path], arch: str) -> list[LocalDeb]:
    """The control data of every file in `paths`, checked to be installable together on `arch`."""
    debs: list[LocalDeb] = []
    for path in paths:
        deb = read_deb(path)
        if deb.arch not in (arch, "all"):
            raise ResolveError(f"{path} is for architecture {deb.arch}, not {arch}")
        if twin := next((d for d in debs if d.name == deb.name), None):
            raise ResolveError(f'package "{deb.name}" is given twice: {twin.path} and {path}')
        debs.append(deb)
    return debs


def make_local_repository(debs: Sequence[LocalDeb], parent: Path) -> LocalRepository:
    """The flat repository of `debs` in a directory of `parent` named by its content.

    The same .debs always give the same directory, so the index files that
    libapt-pkg caches for its URI are never those of other .debs (the file
    methods compare modification times in whole seconds). Other repositories
    in `parent` are removed: they belong to earlier composes.
    """
    entries = []
    for deb in debs:
        size = deb.path.stat().st_size
        entries.append(
            f"{deb.control}\nFilename: ./{deb.path.name}\nSize: {size}\n"
            f"SHA256: {sha256_file(deb.path)}\n"
        )
    packages = "\n".join(entries)
    parent = parent.absolute()
    digest = hashlib.sha256(packages.encode()).hexdigest()
    repo = parent / digest[:16]
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        if old != repo:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    if not (repo / "Release").is_file():
        tmp = parent / f".{repo.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for deb in debs:
            # A copy, not a hard link: a rebuild may rewrite the .deb in place.
            shutil.copyfile(deb.path, tmp / deb.path.name)
        (tmp / "Packages").write_text(packages, encoding="utf-8")
        (tmp / "Release").write_text(
            "Origin: apt-ostree\n"
            "Label: local packages\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\n"
            "SHA256:\n"
            f" {hashlib.sha256(packages.encode()).hexdigest()} {len(packages.encode())} Packages\n",
            encoding="utf-8",
        )
        for path in [tmp, *tmp.iterdir()]:
            # Readable by apt's unprivileged download user.
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.rename(repo)
    # copy:, not file:: mmdebstrap runs dpkg inside the tree, where a file:
    # repository's paths do not exist; copy: puts the .debs into the tree's
    # /var/cache/apt/archives as a download would.
    stanza = f"Types: deb\nURIs: copy:{repo}/\nSuites: ./\nTrusted: yes"
    return LocalRepository(path=repo, stanza=stanza, debs=list(debs))


def check_local_versions(debs: Sequence[LocalDeb], resolved: Sequence[PackageInfo]) -> None:
    """Raise ResolveError when a source's version of a local package won the resolution."""
    chosen = {p.name: p for p in resolved}
    for deb in debs:
        got = chosen.get(deb.name)
        if got is not None and got.version != deb.version:
            raise ResolveError(
                f'local package "{deb.name}" {deb.version} ({deb.path}) loses to version '
                f"{got.version} from the sources; give the local package a higher version"
            )
