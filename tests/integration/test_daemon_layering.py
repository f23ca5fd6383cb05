"""Layering through apt-ostreed: package names and local .debs, the latter passed as
file descriptors that the daemon reads (it never opens a caller's path)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.client.dbus import DaemonError
from apt_ostree.daemon.bus import INVALID_ARGUMENT
from apt_ostree.reporter import NullReporter
from apt_ostree.requests import LocalPackage, Request
from tests.fixtures.aptrepo import build_deb
from tests.fixtures.daemon import Daemon, start_daemon
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.sysroot import deployments_json
from tests.integration.test_layering_requests import REPLACED, REPLACEMENT


@pytest.fixture
def layering_daemon(bus: str, debian_sysroot: DebianSysroot, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(bus, debian_sysroot.path, tmp_path / "apt-ostreed.log")
    yield d
    assert d.stop() == 0, d.log.read_text()


def test_install_by_name_through_the_daemon_layers_the_package(
    layering_daemon: Daemon, debian_sysroot: DebianSysroot
) -> None:
    proc = layering_daemon.cli("install", "dep-top")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        "Added:",
        "  dep-bottom 1.0 (amd64)",
        "  dep-top 1.0 (amd64)",
    ]
    assert "Resolving packages..." in proc.stderr
    d = deployments_json(debian_sysroot.path)[0]
    assert d["requested-packages"] == ["dep-top"]
    assert d["base-checksum"] == debian_sysroot.base_checksum


def test_a_local_deb_crosses_the_bus_as_a_file_descriptor(
    layering_daemon: Daemon,
    debian_sysroot: DebianSysroot,
    layer_debs: dict[str, Path],
    tmp_path: Path,
) -> None:
    deb = tmp_path / "dep-bottom.deb"
    shutil.copy(layer_debs["dep-bottom"], deb)
    fd = os.open(deb, os.O_RDONLY)
    # Gone by path: the daemon can only read what the descriptor holds.
    deb.unlink()
    local = LocalPackage(str(deb), fd=fd)
    request = Request("PkgChange", [[], []], {"install-local-packages": [local]})
    result = layering_daemon.client().transact(request, NullReporter())
    assert result["changed"]
    assert [p["name"] for p in result["layer"]["install"]] == ["dep-bottom"]
    d = deployments_json(debian_sysroot.path)[0]
    assert [e.split(":", 1)[1].split("_")[0] for e in d["requested-local-packages"]] == [
        "dep-bottom"
    ]
    # The daemon's private copy is gone with the transaction.
    assert not list((debian_sysroot.path / "ostree/repo/tmp").glob("apt-ostree-fds-*"))


def test_a_descriptor_that_is_not_a_regular_file_is_refused(
    layering_daemon: Daemon, debian_sysroot: DebianSysroot
) -> None:
    read, write = os.pipe()
    os.close(write)
    request = Request(
        "PkgChange", [[], []], {"install-local-packages": [LocalPackage("pipe", fd=read)]}
    )
    with pytest.raises(DaemonError) as e:
        layering_daemon.client().transact(request, NullReporter())
    assert e.value.name == INVALID_ARGUMENT
    assert "not a regular file" in str(e.value)
    assert len(deployments_json(debian_sysroot.path)) == 1


def test_overrides_search_and_refresh_go_through_the_daemon(
    layering_daemon: Daemon, debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    deb = build_deb(REPLACEMENT, tmp_path / "replacement")
    proc = layering_daemon.cli("override", "replace", deb)
    assert proc.returncode == 0, proc.stderr
    assert f"  {REPLACED} " in proc.stdout and f"-> {REPLACEMENT.version}" in proc.stdout
    d = deployments_json(debian_sysroot.path)[0]
    new = d["base-local-replacements"][0][0]
    assert new[0] == f"{REPLACED}_{REPLACEMENT.version}_amd64" and new[1] == REPLACED
    proc = layering_daemon.cli("override", "reset", REPLACED)
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(debian_sysroot.path)[0]["checksum"] == debian_sysroot.base_checksum
    proc = layering_daemon.cli("override", "remove", "nosuchpkg")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == 'error: package "nosuchpkg" is not in the base commit'
    refreshed = layering_daemon.cli("refresh-md")
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout == "Package indexes are up to date.\n"
    found = layering_daemon.cli("search", "dep-top")
    assert found.returncode == 0 and found.stdout.startswith("dep-top"), found.stdout
