"""search, refresh-md, override replace, and --install/--uninstall with a new base,
on the real Debian base with the layering fixture repository as its only source."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from apt_ostree.system.status import package_tuple
from tests.fixtures.aptrepo import DebSpec, build_deb
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import apt_ostree, deployments_json
from tests.integration.test_layering import (
    _new_base,
    assert_healthy,
    assert_unchanged,
    deployment_dir,
    dpkg,
    install,
)

# `hostname` of the base (Essential, nothing depends on it), and a newer local one.
REPLACED = "hostname"
REPLACEMENT = DebSpec(
    REPLACED,
    "99.0-apt-ostree-test",
    essential=True,
    files={
        "usr/bin/hostname": "#!/bin/sh\necho fixture-host\n",
        "usr/share/hostname-fixture/data": "replacement\n",
    },
    modes={"usr/bin/hostname": 0o755},
)


@pytest.fixture
def layered(debian_sysroot: DebianSysroot, layer_repo: object) -> DebianSysroot:
    return debian_sysroot


@pytest.fixture
def replacement_deb(tmp_path: Path) -> Path:
    return build_deb(REPLACEMENT, tmp_path / "replacement")


def base_version(sysroot: DebianSysroot, name: str) -> str:
    return dpkg(sysroot.deployment, "-s", name).stdout.split("Version: ", 1)[1].split("\n")[0]


def installed_version(tree: Path, name: str) -> str:
    proc = dpkg(tree, "-s", name)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("Version: ", 1)[1].split("\n")[0]


# -- search and refresh-md ------------------------------------------------------------


def test_search_finds_a_package_by_a_word_of_its_summary(layered: DebianSysroot) -> None:
    proc = apt_ostree(layered.path, "search", "synthetic", "dep-top")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "dep-top - synthetic package dep-top for apt-ostree tests\n"


def test_search_lists_every_match_sorted(layered: DebianSysroot) -> None:
    proc = apt_ostree(layered.path, "search", "top")
    assert proc.returncode == 0, proc.stderr
    names = [line.split(" - ")[0] for line in proc.stdout.splitlines()]
    assert names == ["conflicts-with-top", "dep-top"]


def test_search_without_a_match_says_so(layered: DebianSysroot) -> None:
    proc = apt_ostree(layered.path, "search", "no-such-word-anywhere")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "No matches found.\n"


def test_refresh_md_fetches_the_indexes(layered: DebianSysroot) -> None:
    proc = apt_ostree(layered.path, "refresh-md")
    assert proc.returncode == 0, proc.stderr
    forced = apt_ostree(layered.path, "refresh-md", "-f")
    assert forced.returncode == 0, forced.stderr
    assert "Get: " in forced.stderr
    assert_unchanged(layered)


def test_refresh_md_of_an_unreachable_source_is_a_one_line_error(
    layered: DebianSysroot,
) -> None:
    layered.sources.write_text(
        "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: fixture\nComponents: main\n"
    )
    proc = apt_ostree(layered.path, "refresh-md")
    assert proc.returncode == 1
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "http://127.0.0.1:9/debian" in line and "unreachable" in line
    assert "Traceback" not in proc.stderr


# -- override replace -----------------------------------------------------------------


def replace_base_package(layered: DebianSysroot, what: str | Path, version: str) -> Path:
    """`override replace WHAT` of REPLACED: it says so and `version` is installed; the
    new deployment's tree."""
    old = base_version(layered, REPLACED)
    proc = apt_ostree(layered.path, "override", "replace", what)
    assert proc.returncode == 0, proc.stderr
    assert f"{REPLACED} {old} -> {version}" in proc.stdout
    tree = assert_healthy(layered)
    assert installed_version(tree, REPLACED) == version
    return tree


def test_override_replace_installs_the_local_version_of_a_base_package(
    layered: DebianSysroot, replacement_deb: Path
) -> None:
    old = base_version(layered, REPLACED)
    tree = replace_base_package(layered, replacement_deb, REPLACEMENT.version)
    assert (tree / "usr/bin/hostname").read_text() == "#!/bin/sh\necho fixture-host\n"
    d = deployments_json(layered.path)[0]
    assert [e.split(":", 1)[1] for e in d["requested-base-local-replacements"]] == [
        f"{REPLACED}_{REPLACEMENT.version}_amd64"
    ]
    # rpm-ostree's shape: [new, old] package tuples (nevra, name, epoch, version, revision, arch)
    assert d["base-local-replacements"] == [
        [
            package_tuple(REPLACED, REPLACEMENT.version, "amd64"),
            package_tuple(REPLACED, old, "amd64"),
        ]
    ]
    assert d["packages"] == [] and d["requested-local-packages"] == []
    status = apt_ostree(layered.path, "status").stdout
    assert f"ReplacedBasePackages: {REPLACED} {old} -> {REPLACEMENT.version}" in status
    diff = apt_ostree(layered.path, "db", "diff", "--format=json",
                      layered.base_checksum, d["checksum"])  # fmt: skip
    assert diff.returncode == 0, diff.stderr
    changed = [p for p in json.loads(diff.stdout)["pkgdiff"] if p[0] == REPLACED]
    assert changed, diff.stdout


def test_override_reset_brings_back_the_base_version(
    layered: DebianSysroot, replacement_deb: Path
) -> None:
    old = base_version(layered, REPLACED)
    assert apt_ostree(layered.path, "override", "replace", replacement_deb).returncode == 0
    proc = apt_ostree(layered.path, "override", "reset", REPLACED)
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["checksum"] == layered.base_checksum
    assert d["requested-base-local-replacements"] == []
    assert installed_version(deployment_dir(layered), REPLACED) == old


def test_replacement_survives_a_rebuild_of_the_layer(
    layered: DebianSysroot, replacement_deb: Path
) -> None:
    assert apt_ostree(layered.path, "override", "replace", replacement_deb).returncode == 0
    assert install(layered, "dep-top").returncode == 0
    tree = assert_healthy(layered)
    assert installed_version(tree, REPLACED) == REPLACEMENT.version
    d = deployments_json(layered.path)[0]
    assert d["packages"] == ["dep-top"] and d["base-local-replacements"][0][0][1] == REPLACED


def test_replacing_a_package_that_is_not_in_the_base_is_an_error(
    layered: DebianSysroot, layer_debs: dict[str, Path]
) -> None:
    proc = apt_ostree(layered.path, "override", "replace", layer_debs["dep-bottom"])
    assert proc.returncode == 1
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith('error: package "dep-bottom" is not in the base commit')
    assert "Traceback" not in proc.stderr
    assert_unchanged(layered)


# -- --install / --uninstall with upgrade, deploy ----------------------------------------


def test_deploy_install_layers_the_package_on_the_new_base(
    layered: DebianSysroot, tmp_path: Path
) -> None:
    new_base = _new_base(layered, tmp_path)
    proc = apt_ostree(layered.path, "deploy", "--skip-branch-check", "--install=dep-top", new_base)
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["base-checksum"] == new_base and d["packages"] == ["dep-top"]
    assert d["requested-packages"] == ["dep-top"]
    tree = deployment_dir(layered)
    assert (tree / "usr/share/new-base-marker").exists()
    assert dpkg(tree, "-s", "dep-top").returncode == 0
    fsck(layered.path)


def commit_on(
    sysroot: DebianSysroot,
    parent: str,
    branch: str,
    tmp_path: Path,
    files: dict[str, str] | None = None,
) -> str:
    """A child commit of `parent` (a marker file more, and `files`) on the local ref `branch`."""
    extra = Path(tempfile.mkdtemp(prefix="extra-on-branch-", dir=tmp_path))
    for path, text in {"usr/share/newer-base-marker": "newer base\n", **(files or {})}.items():
        (extra / path).parent.mkdir(parents=True, exist_ok=True)
        (extra / path).write_text(text)
    return subprocess.run(
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "commit", f"--branch={branch}",
         f"--parent={parent}", "--owner-uid=0", "--owner-gid=0",
         f"--tree=ref={parent}", f"--tree=dir={extra}", "-s", "newer base"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def rebase_on_local_base(sysroot: DebianSysroot) -> str:
    """Rebase on `self:local-base`: the sysroot's own repository as a remote, whose ref
    local-base is what upgrade then pulls. The base commit is bound to its own ref, so
    local-base starts with a copy of its tree (a commit that a client following
    local-base accepts); returns that commit."""
    repo = sysroot.path / "ostree/repo"
    first = subprocess.run(
        ["ostree", f"--repo={repo}", "commit", "--branch=local-base", "--owner-uid=0",
         "--owner-gid=0", f"--tree=ref={sysroot.base_checksum}", "-s", "local base"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(["ostree", f"--repo={repo}", "remote", "add", "--no-gpg-verify", "self",
                    f"file://{repo}"], check=True, capture_output=True)  # fmt: skip
    rebased = apt_ostree(sysroot.path, "rebase", "self:local-base")
    assert rebased.returncode == 0, rebased.stderr
    return first


def test_upgrade_install_applies_the_request_with_the_new_base(
    layered: DebianSysroot, tmp_path: Path
) -> None:
    first = rebase_on_local_base(layered)
    newer = commit_on(layered, first, "local-base", tmp_path)
    proc = apt_ostree(layered.path, "upgrade", "--install=dep-top")
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["base-checksum"] == newer and d["packages"] == ["dep-top"]
    assert d["origin"] == "self:local-base"
    tree = deployment_dir(layered)
    assert (tree / "usr/share/newer-base-marker").exists()
    assert dpkg(tree, "-s", "dep-top").returncode == 0
    fsck(layered.path)


def test_deploy_install_of_the_deployed_base_behaves_like_install(
    layered: DebianSysroot,
) -> None:
    proc = apt_ostree(
        layered.path, "deploy", "--skip-branch-check", "--install=dep-top", layered.base_checksum
    )
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    d = deployments_json(layered.path)[0]
    assert d["packages"] == ["dep-top"]
    assert dpkg(tree, "-s", "dep-top").returncode == 0


def test_upgrade_uninstall_without_a_new_base_removes_the_package(
    layered: DebianSysroot,
) -> None:
    assert install(layered, "dep-top").returncode == 0
    proc = apt_ostree(layered.path, "upgrade", "--uninstall=dep-top")
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["checksum"] == layered.base_checksum and d["requested-packages"] == []


def test_upgrade_install_with_check_is_refused(layered: DebianSysroot) -> None:
    proc = apt_ostree(layered.path, "upgrade", "--check", "--install=dep-top")
    assert proc.returncode == 1
    assert "--check" in proc.stderr
    assert_unchanged(layered)
