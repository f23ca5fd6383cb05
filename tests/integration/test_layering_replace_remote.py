"""override replace NAME[=VERSION]: a base package replaced from the APT sources, on the
real Debian base whose only source is the layering fixture repository plus two newer
versions of the base's `hostname`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from apt_ostree.layout import DPKG_DB
from apt_ostree.system.status import package_tuple
from tests.fixtures.aptrepo import AptRepo, SigningKey, build_deb, build_repo
from tests.fixtures.daemon import start_daemon
from tests.fixtures.debianbase import DebianSysroot, fixture_sources
from tests.fixtures.deployments import sysroot_state
from tests.fixtures.sysroot import apt_ostree, deployments_json
from tests.integration.test_layering import assert_healthy, deployment_dir, dpkg, ostree_cat
from tests.integration.test_layering_requests import (
    REPLACED,
    REPLACEMENT,
    base_version,
    commit_on,
    installed_version,
    rebase_on_local_base,
    replace_base_package,
)

NEWEST = dataclasses.replace(REPLACEMENT, version="99.1-fixture", depends="dep-bottom")
OLDER = dataclasses.replace(REPLACEMENT, version="99.0-fixture")


@pytest.fixture(scope="module")
def replace_repo(
    tmp_path_factory: pytest.TempPathFactory, layer_debs: dict[str, Path], signing_key: SigningKey
) -> AptRepo:
    debdir = tmp_path_factory.mktemp("replace-debs")
    debs = [*layer_debs.values(), build_deb(NEWEST, debdir), build_deb(OLDER, debdir)]
    return build_repo(debs, tmp_path_factory.mktemp("replace-repo"), signing_key)


@pytest.fixture
def layered(
    debian_sysroot: DebianSysroot, replace_repo: AptRepo, signing_key: SigningKey
) -> DebianSysroot:
    debian_sysroot.sources.write_text(fixture_sources(replace_repo, signing_key))
    return debian_sysroot


def origin_overrides(sysroot: DebianSysroot) -> list[str]:
    d = deployments_json(sysroot.path)[0]
    path = sysroot.path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}.origin"
    return [line for line in path.read_text().splitlines() if line.startswith("replace")]


def test_override_replace_by_name_installs_the_newest_version_of_the_sources(
    layered: DebianSysroot,
) -> None:
    old = base_version(layered, REPLACED)
    tree = replace_base_package(layered, REPLACED, NEWEST.version)
    # What the new version needs comes from the sources too.
    assert dpkg(tree, "-s", "dep-bottom").returncode == 0
    assert origin_overrides(layered) == [f"replace={REPLACED};"]
    d = deployments_json(layered.path)[0]
    assert d["requested-base-remote-replacements"] == [["apt", [REPLACED]]]
    assert d["base-remote-replacements"] == {
        "apt": [[package_tuple(REPLACED, NEWEST.version, "amd64"),
                 package_tuple(REPLACED, old, "amd64")]]
    }  # fmt: skip
    assert d["base-local-replacements"] == [] and d["packages"] == []
    status = apt_ostree(layered.path, "status").stdout
    assert f"RemoteOverrides: {REPLACED} {old} -> {NEWEST.version}" in status


def test_override_replace_of_a_pinned_version_installs_that_version(
    layered: DebianSysroot,
) -> None:
    spec = f"{REPLACED}={OLDER.version}"
    proc = apt_ostree(layered.path, "override", "replace", spec)
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    assert installed_version(tree, REPLACED) == OLDER.version
    assert dpkg(tree, "-s", "dep-bottom").returncode != 0
    assert origin_overrides(layered) == [f"replace={spec};"]
    again = apt_ostree(layered.path, "override", "replace", spec)
    assert again.returncode == 0 and again.stdout == "No change.\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dep-bottom", 'error: package "dep-bottom" is not in the base commit'),
        ("bash", 'error: the APT sources have no version of package "bash" newer than '),
        (f"{REPLACED}=1.0-nowhere",
         f'error: version 1.0-nowhere of package "{REPLACED}" is not in the APT sources'),
        ("Bad_Name", 'error: invalid replacement "Bad_Name": expected NAME or NAME=VERSION'),
    ],
)  # fmt: skip
def test_a_replacement_that_cannot_be_is_refused_in_one_line(
    layered: DebianSysroot, spec: str, message: str
) -> None:
    before = sysroot_state(layered.path)
    proc = apt_ostree(layered.path, "override", "replace", spec)
    assert proc.returncode == 1
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sysroot_state(layered.path) == before
    [d] = deployments_json(layered.path)
    assert d["checksum"] == layered.base_checksum


def test_override_reset_undoes_a_replacement_from_the_sources(layered: DebianSysroot) -> None:
    old = base_version(layered, REPLACED)
    assert apt_ostree(layered.path, "override", "replace", REPLACED).returncode == 0
    proc = apt_ostree(layered.path, "override", "reset", REPLACED)
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["checksum"] == layered.base_checksum
    assert d["requested-base-remote-replacements"] == [] and origin_overrides(layered) == []
    assert installed_version(deployment_dir(layered), REPLACED) == old


def _status_with(sysroot: DebianSysroot, commit: str, version: str) -> dict[str, str]:
    """The dpkg status file of `commit`, where `hostname` is installed in `version`."""
    stanzas = ostree_cat(sysroot, commit, f"/{DPKG_DB}/status").split("\n\n")
    for i, stanza in enumerate(stanzas):
        if stanza.startswith(f"Package: {REPLACED}\n"):
            lines = [f"Version: {version}" if line.startswith("Version: ") else line
                     for line in stanza.splitlines()]  # fmt: skip
            stanzas[i] = "\n".join(lines)
    return {f"{DPKG_DB}/status": "\n\n".join(stanzas)}


def test_upgrade_keeps_the_replacement_until_the_base_has_that_version(
    layered: DebianSysroot, tmp_path: Path
) -> None:
    first = rebase_on_local_base(layered)
    assert apt_ostree(layered.path, "override", "replace", REPLACED).returncode == 0

    newer = commit_on(layered, first, "local-base", tmp_path)
    proc = apt_ostree(layered.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["base-checksum"] == newer
    assert [new[1] for new, _ in d["base-remote-replacements"]["apt"]] == [REPLACED]
    assert installed_version(deployment_dir(layered), REPLACED) == NEWEST.version

    # The new base has the version of the sources: the request stays, inactive.
    files = _status_with(layered, newer, NEWEST.version)
    newest = commit_on(layered, newer, "local-base", tmp_path, files)
    proc = apt_ostree(layered.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["base-checksum"] == newest
    assert d["base-remote-replacements"] == {}
    assert d["requested-base-remote-replacements"] == [["apt", [REPLACED]]]
    status = apt_ostree(layered.path, "status").stdout
    assert f"InactiveRemoteOverrides: {REPLACED}" in status


def test_override_replace_by_name_goes_through_the_daemon(
    bus: str, layered: DebianSysroot, tmp_path: Path
) -> None:
    daemon = start_daemon(bus, layered.path, tmp_path / "apt-ostreed.log")
    try:
        proc = daemon.cli("override", "replace", f"{REPLACED}={OLDER.version}")
        assert proc.returncode == 0, proc.stderr
        assert installed_version(deployment_dir(layered), REPLACED) == OLDER.version
        d = deployments_json(layered.path)[0]
        assert d["requested-base-remote-replacements"] == [["apt", [f"{REPLACED}={OLDER.version}"]]]
        proc = daemon.cli("override", "reset", REPLACED)
        assert proc.returncode == 0, proc.stderr
        assert deployments_json(layered.path)[0]["checksum"] == layered.base_checksum
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()
