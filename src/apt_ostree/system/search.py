"""search and refresh-md: the package indexes of the APT sources of the system.

The sources are those configured in the system's /etc/apt: the booted
deployment's, or offline the default deployment's. The index files live in
the stateroot's APT state (`layering.state_dir(...) / "apt"`), the same that
layering resolves with, so a refresh here serves the next install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apt_ostree.debian.resolve import refresh_metadata, search_packages
from apt_ostree.debian.sources import host_sources
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.reporter import Reporter
from apt_ostree.system.layering import dpkg_arch, state_dir
from apt_ostree.system.sysroot import Sysroot


@dataclass(frozen=True)
class SearchResult:
    name: str
    version: str
    summary: str


def _system_deployment(sysroot: Sysroot, osname: str) -> DeploymentInfo:
    """Whose /etc/apt names the sources: the booted deployment, else the default one."""
    deployments = [d for d in sysroot.deployments() if d.osname == osname]
    for d in deployments:
        if d.booted:
            return d
    if not deployments:
        raise AptOstreeError(f'the sysroot at {sysroot.path} has no deployment of "{osname}"')
    return deployments[0]


def _sources(sysroot: Sysroot, osname: str) -> tuple[list[str], str]:
    """The deb822 stanzas of the system's sources, and the architecture of its packages."""
    deployment = _system_deployment(sysroot, osname)
    assert deployment.path is not None
    root = Path("/") if deployment.booted else deployment.path
    return host_sources(root), dpkg_arch(deployment.path)


def search(
    sysroot: Sysroot, osname: str, terms: list[str], *, reporter: Reporter | None = None
) -> list[SearchResult]:
    """Packages whose name or summary has every term (ignoring case), sorted by name.

    Read-only for the system: the cached index files are used (fetched first
    only when there are none).
    """
    stanzas, arch = _sources(sysroot, osname)
    found = search_packages(
        stanzas, terms, arch=arch, statedir=state_dir(sysroot, osname) / "apt", reporter=reporter
    )
    return [SearchResult(*entry) for entry in found]


def refresh(
    sysroot: Sysroot, osname: str, *, force: bool = False, reporter: Reporter | None = None
) -> None:
    """Bring the index files up to date; `force` drops the cached ones first.
    The caller holds the sysroot lock."""
    stanzas, arch = _sources(sysroot, osname)
    refresh_metadata(
        stanzas, arch=arch, statedir=state_dir(sysroot, osname) / "apt", force=force,
        reporter=reporter,
    )  # fmt: skip
