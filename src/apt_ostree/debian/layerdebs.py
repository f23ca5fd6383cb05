"""The local .deb files of a layer request, as a flat source of one resolution.

Runs in the resolver child only (it imports apt_pkg).
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.debian.aptstate import LOCAL_SOURCES
from apt_ostree.debian.fetch import sha256_file
from apt_ostree.errors import ResolveError


@dataclass(frozen=True)
class LocalDeb:
    """A .deb given on the command line, as its control file and its bytes say."""

    path: str
    name: str
    version: str
    arch: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LocalRepo:
    stanza: str
    sources: Path
    uri: str
    debs: list[LocalDeb]


def _read_local_deb(path: str, arch: str) -> tuple[LocalDeb, str]:
    """`path`'s identity and its Packages stanza (control fields, size and checksum)."""
    import apt_inst
    import apt_pkg

    try:
        control = apt_inst.DebFile(path).control.extractdata("control").decode()
        section = apt_pkg.TagSection(control)
        name, version, deb_arch = section["Package"], section["Version"], section["Architecture"]
    except (SystemError, apt_pkg.Error, LookupError, UnicodeDecodeError) as e:
        raise ResolveError(f"{path} is not a valid .deb package: {e}") from None
    if deb_arch not in (arch, "all"):
        raise ResolveError(f"{path} is for architecture {deb_arch}, not {arch}")
    size = Path(path).stat().st_size
    digest = sha256_file(Path(path))
    stanza = (
        control.strip("\n") + f"\nFilename: ./{Path(path).name}\nSize: {size}\nSHA256: {digest}\n"
    )
    return LocalDeb(path, name, version, deb_arch, size, digest), stanza


def local_repo(statedir: Path, paths: Sequence[str], arch: str) -> LocalRepo | None:
    """Make `paths` a flat, trusted file: source in statedir, for this resolution only.

    That is what `apt install ./x.deb` does with its "volatile" files, which
    python-apt does not reach: the control data takes part in the resolution
    as if the package came from a source. The repository's directory is named
    by its content, so that its index is never mistaken for a cached one of
    other .debs (the file: method compares mtimes in seconds).
    """
    import apt_pkg

    root = statedir / "local-debs"
    debs: list[LocalDeb] = []
    stanzas: list[str] = []
    for path in paths:
        deb, stanza = _read_local_deb(path, arch)
        if twin := next((d for d in debs if d.name == deb.name), None):
            raise ResolveError(f'package "{deb.name}" is given twice: {twin.path} and {deb.path}')
        debs.append(deb)
        stanzas.append(stanza)
    packages = "\n".join(stanzas)
    repo = root / hashlib.sha256(packages.encode()).hexdigest()[:16] if debs else None
    # Earlier resolutions' repositories and their lists are stale.
    if root.is_dir():
        for old in root.iterdir():
            if old != repo:
                shutil.rmtree(old)
    lists = statedir / "state" / "lists"
    stale = apt_pkg.uri_to_filename(f"file:{root}/")
    current = apt_pkg.uri_to_filename(f"file:{repo}/") if repo else None
    for listed in lists.iterdir():
        if listed.name.startswith(stale) and not (current and listed.name.startswith(current)):
            listed.unlink()
    if repo is None:
        return None
    if not (repo / "Release").is_file():
        repo.mkdir(parents=True, exist_ok=True)
        (repo / "Packages").write_text(packages, encoding="utf-8")
        release = (
            "Origin: apt-ostree\n"
            "Label: local packages\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\n"
            "SHA256:\n"
            f" {hashlib.sha256(packages.encode()).hexdigest()} {len(packages.encode())} Packages\n"
        )
        (repo / "Release.tmp").write_text(release, encoding="utf-8")
        (repo / "Release.tmp").replace(repo / "Release")
    uri = f"file:{repo}/"
    # Trusted: these files are the user's own, given on the command line.
    stanza = f"Types: deb\nURIs: {uri}\nSuites: ./\nTrusted: yes\n"
    sources = statedir / "etc" / "sources.list.d" / LOCAL_SOURCES
    sources.write_text(stanza, encoding="utf-8")
    return LocalRepo(stanza=stanza, sources=sources, uri=uri, debs=debs)
