"""A real Debian tree as an OCI image (slow): `compose image` of the test cache's
Debian base, pushed to a registry on 127.0.0.1, fetched back, unpacked by umoci,
and the repo its layers carry checked by `ostree fsck` against the commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from apt_ostree.oci.layout import OciLayout
from tests.fixtures.debianbase import CACHEDIR, COMPOSED_REF, DebianBase, _locked
from tests.fixtures.ocitrees import REPO_DIR, extract_layers, layer_paths, ostree
from tests.fixtures.registry import Registry
from tests.fixtures.sysroot import apt_ostree

pytestmark = pytest.mark.slow


def test_compose_image_of_debian_travels_through_a_registry_intact(
    debian_base: DebianBase, registry: Registry, tmp_path: Path
) -> None:
    archive = tmp_path / "debian.ociarchive"
    args = ["compose", "image", CACHEDIR / "debian-base.yaml", archive, "--cachedir", CACHEDIR,
            "--repo", debian_base.repo]  # fmt: skip
    # The cache's repo is shared with other sessions (which may compose it anew):
    # compose, and read what the ref holds, under its lock.
    with _locked(CACHEDIR / "debian-base.lock"):
        first = apt_ostree(None, *args, "--initialize")
        assert first.returncode == 0, first.stderr
        again = apt_ostree(None, *args, "--unchanged-exit-77")
        commit = ostree("rev-parse", f"--repo={debian_base.repo}", COMPOSED_REF).strip()
        original = ostree("ls", f"--repo={debian_base.repo}", "-R", "-C", "-X", commit)
    assert again.returncode == 77 and "No changes" in again.stdout
    digest = first.stdout.split("Pushed digest: ", 1)[1].strip()

    pushed = registry.ref("apt-ostree/debian-base:latest")
    subprocess.run([*registry.skopeo, "copy", "--quiet", f"oci-archive:{archive}", pushed],
                   check=True)  # fmt: skip
    inspect = json.loads(
        subprocess.run(
            [*registry.skopeo, "inspect", pushed], capture_output=True, check=True
        ).stdout
    )
    assert inspect["Digest"] == digest
    assert inspect["Labels"]["ostree.commit"] == commit
    assert len(inspect["Layers"]) > 40  # split by package, at most 64

    fetched = tmp_path / "fetched"
    subprocess.run([*registry.skopeo, "copy", "--quiet", pushed, f"oci:{fetched}:latest"],
                   check=True)  # fmt: skip
    layout = OciLayout.open(fetched)
    manifest = layout.read_json_blob(layout.manifest_descriptor("latest"))
    extract_layers(layer_paths(fetched, manifest), tmp_path / "root")
    repo = tmp_path / "root" / REPO_DIR
    assert "no errors found" in ostree("fsck", f"--repo={repo}")
    assert ostree("ls", f"--repo={repo}", "-R", "-C", "-X", commit) == original

    subprocess.run(["umoci", "unpack", "--image", f"{fetched}:latest", tmp_path / "bundle"],
                   check=True, capture_output=True)  # fmt: skip
    rootfs = tmp_path / "bundle/rootfs"
    assert (rootfs / "etc/passwd").read_text().startswith("root:")
    bash = subprocess.run(
        ["ostree", "cat", f"--repo={repo}", commit, "/usr/bin/bash"],
        capture_output=True,
        check=True,
    ).stdout
    assert (rootfs / "usr/bin/bash").read_bytes() == bash
