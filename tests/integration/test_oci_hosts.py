"""Hosts follow images: `rebase`/`upgrade` with rpm-ostree's image references.

The packaged commits (v1, v2 = pkg-b changed) are encapsulated with
`compose container-encapsulate` (v2 reusing v1's split) and pushed to a real
docker-registry on 127.0.0.1; a sysroot deployed from the ref at v1 rebases to
the image and upgrades to v2.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.oci.layout import Descriptor, OciLayout
from apt_ostree.reporter import NullReporter
from tests.fixtures.deployments import fsck, sysroot_state
from tests.fixtures.ocitrees import PackagedRepo, ostree
from tests.fixtures.registry import Registry
from tests.fixtures.sysroot import apt_ostree, deployments_json

NAME = "apt-ostree/host"


@dataclass(frozen=True)
class Images:
    layout: Path  # oci layout with tags v1, v2
    registry: Registry

    def registry_ref(self, tag: str) -> str:
        return f"ostree-unverified-registry:{self.registry.host}/{NAME}:{tag}"

    def oci_ref(self, tag: str) -> str:
        return f"ostree-unverified-image:oci:{self.layout}:{tag}"


def _encapsulate(repo: PackagedRepo, version: str, imgref: str, *args: str) -> None:
    proc = apt_ostree(
        None, "compose", "container-encapsulate", "--repo", repo.path,
        repo.commits[version], imgref, *args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def images(
    packaged_repo: PackagedRepo, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Images:
    layout = tmp_path_factory.mktemp("host-images") / "img"
    _encapsulate(packaged_repo, "1", f"oci:{layout}:v1")
    _encapsulate(
        packaged_repo, "2", f"oci:{layout}:v2", "--previous-build-manifest", f"oci:{layout}:v1"
    )
    for tag in ("v1", "v2"):
        subprocess.run(
            [*registry.skopeo, "copy", "--quiet", f"oci:{layout}:{tag}",
             registry.ref(f"{NAME}:{tag}")],
            check=True,
        )  # fmt: skip
    return Images(layout, registry)


@pytest.fixture
def ref_sysroot(tmpfs: Path, packaged_repo: PackagedRepo) -> Path:
    """A sysroot with the packaged v1 deployed from its ref."""
    path = tmpfs / "sysroot"
    make_sysroot(
        SysrootRequest(
            path=path, repo=packaged_repo.path, ref=packaged_repo.ref,
            kargs=["root=LABEL=root"], remote="origin", remote_url=f"file://{packaged_repo.path}",
            gpg_verify=False, revision=packaged_repo.commits["1"],
        ),
        NullReporter(),
    )  # fmt: skip
    return path


def _tree(sysroot: Path, checksum: str) -> str:
    """Every file of a commit with its checksum, mode and owner."""
    return ostree("ls", f"--repo={sysroot}/ostree/repo", "-R", "-C", "-X", checksum)


def _origin_file(sysroot: Path) -> str:
    d = deployments_json(sysroot)[0]
    return (
        sysroot / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}.origin"
    ).read_text()


def _manifest(layout: OciLayout, tag: str) -> dict[str, Any]:
    manifest: dict[str, Any] = layout.read_json_blob(layout.manifest_descriptor(tag))
    return manifest


def _rebase(sysroot: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return apt_ostree(sysroot, "rebase", ref)


def test_rebase_to_a_registry_image_deploys_the_same_content_as_the_ref(
    ref_sysroot: Path, images: Images, packaged_repo: PackagedRepo
) -> None:
    proc = _rebase(ref_sysroot, images.registry_ref("v1"))
    assert proc.returncode == 0, proc.stderr
    new, old = deployments_json(ref_sysroot)
    assert old["checksum"] == packaged_repo.commits["1"]
    assert _tree(ref_sysroot, new["checksum"]) == _tree(ref_sysroot, old["checksum"])
    assert new["container-image-reference"] == images.registry_ref("v1")
    manifest = OciLayout.open(images.layout).manifest_descriptor("v1")
    assert new["container-image-reference-digest"] == manifest.digest
    assert new["version"] == "1.0"
    assert f"container-image-reference={images.registry_ref('v1')}" in _origin_file(ref_sysroot)
    fsck(ref_sysroot)


def test_upgrade_fetches_only_the_changed_layers(ref_sysroot: Path, images: Images) -> None:
    assert _rebase(ref_sysroot, images.oci_ref("v1")).returncode == 0
    # Re-point the origin at the v2 tag: a rebase to a new tag of the same image.
    proc = _rebase(ref_sysroot, images.oci_ref("v2"))
    assert proc.returncode == 0, proc.stderr
    assert "pkg-b 1.0 -> 2.0" in proc.stdout
    layout = OciLayout.open(images.layout)
    v1 = {d["digest"] for d in _manifest(layout, "v1")["layers"]}
    v2 = _manifest(layout, "v2")["layers"]
    changed = sum(int(d["size"]) for d in v2 if d["digest"] not in v1)
    manifest = layout.manifest_descriptor("v2")
    config = _manifest(layout, "v2")["config"]
    fetched = int(proc.stderr.split("Fetched image: ", 1)[1].split()[0])
    assert changed > 0
    assert fetched == changed + manifest.size + int(config["size"])
    assert deployments_json(ref_sysroot)[0]["version"] == "2.0"


def test_upgrade_check_compares_digests_and_upgrade_deploys_the_new_tag(
    ref_sysroot: Path, images: Images
) -> None:
    assert _rebase(ref_sysroot, images.oci_ref("v1")).returncode == 0
    check = apt_ostree(ref_sysroot, "upgrade", "--check")
    assert check.returncode == 77, check.stdout + check.stderr
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{images.layout}:v2", f"oci:{images.layout}:v1"],
        check=True,
    )
    before = sysroot_state(ref_sysroot)
    check = apt_ostree(ref_sysroot, "upgrade", "--check")
    assert check.returncode == 0, check.stderr
    assert "Version: 2.0" in check.stdout.replace("        ", "")
    assert sysroot_state(ref_sysroot) == before
    up = apt_ostree(ref_sysroot, "upgrade")
    assert up.returncode == 0, up.stderr
    assert deployments_json(ref_sysroot)[0]["version"] == "2.0"
    again = apt_ostree(ref_sysroot, "upgrade", "--unchanged-exit-77")
    assert again.returncode == 77, again.stdout + again.stderr


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def _layout_with_config(
    images: Images, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> str:
    """A copy of image v1 whose config is changed by `edit` (a function of the dict)."""
    dest = tmp_path / "edited"
    subprocess.run(["cp", "-a", str(images.layout), str(dest)], check=True)
    layout = OciLayout.open(dest)
    desc = layout.manifest_descriptor("v1")
    manifest = layout.read_json_blob(desc)
    config = layout.read_json_blob(Descriptor.from_json(manifest["config"]))
    edit(config)
    manifest["config"] = layout.write_json_blob(config, manifest["config"]["mediaType"]).to_json()
    new = layout.write_json_blob(manifest, desc.media_type)
    layout.set_manifest(new, "v1", {"architecture": "amd64", "os": "linux"})
    return f"ostree-unverified-image:oci:{dest}:v1"


def test_an_image_that_is_not_bootable_is_refused(
    ref_sysroot: Path, images: Images, tmp_path: Path
) -> None:
    def unlabel(config: dict[str, Any]) -> None:
        for key in ("containers.bootc", "ostree.bootable"):
            config["config"]["Labels"].pop(key, None)

    before = sysroot_state(ref_sysroot)
    assert "is not a bootable image" in _error(
        _rebase(ref_sysroot, _layout_with_config(images, tmp_path, unlabel))
    )
    assert sysroot_state(ref_sysroot) == before


def test_an_image_for_another_architecture_is_refused(
    ref_sysroot: Path, images: Images, tmp_path: Path
) -> None:
    def arm(config: dict[str, Any]) -> None:
        config["architecture"] = "arm64"

    assert "is built for arm64" in _error(
        _rebase(ref_sysroot, _layout_with_config(images, tmp_path, arm))
    )


def test_a_tampered_layer_is_refused_and_stores_nothing(
    ref_sysroot: Path, images: Images, tmp_path: Path
) -> None:
    dest = tmp_path / "tampered"
    subprocess.run(["cp", "-a", str(images.layout), str(dest)], check=True)
    layout = OciLayout.open(dest)
    manifest = _manifest(layout, "v1")
    blob = layout.blob_path(manifest["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
        assert tar.getmembers()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    before = sysroot_state(ref_sysroot)
    line = _error(_rebase(ref_sysroot, f"ostree-unverified-image:oci:{dest}:v1"))
    assert "is corrupt: its content has digest" in line
    assert sysroot_state(ref_sysroot) == before
    refs = ostree("refs", f"--repo={ref_sysroot}/ostree/repo")
    assert "ostree/container" not in refs


def test_a_reference_that_cannot_be_fetched_is_refused(ref_sysroot: Path, images: Images) -> None:
    line = _error(
        _rebase(ref_sysroot, f"ostree-unverified-registry:{images.registry.host}/no/such:v1")
    )
    assert line.startswith("error: cannot fetch")
    line = _error(_rebase(ref_sysroot, "ostree-unverified-image:oci:relative/path"))
    assert "must be absolute" in line


def test_image_status_json_keeps_rpm_ostree_keys(ref_sysroot: Path, images: Images) -> None:
    assert _rebase(ref_sysroot, images.oci_ref("v1")).returncode == 0
    proc = apt_ostree(ref_sysroot, "status", "--json")
    d = json.loads(proc.stdout)["deployments"][0]
    assert d["container-image-reference"] == images.oci_ref("v1")
    assert d["container-image-reference-digest"].startswith("sha256:")
    text = apt_ostree(ref_sysroot, "status").stdout
    assert images.oci_ref("v1") in text


def test_cleanup_drops_the_refs_of_images_no_deployment_follows(
    ref_sysroot: Path, images: Images, packaged_repo: PackagedRepo
) -> None:
    assert _rebase(ref_sysroot, images.oci_ref("v1")).returncode == 0
    repo = f"--repo={ref_sysroot}/ostree/repo"
    assert "ostree/container/image/" in ostree("refs", repo)
    assert apt_ostree(ref_sysroot, "cleanup", "-p").returncode == 0
    assert "ostree/container/image/" in ostree("refs", repo)  # still deployed
    assert _rebase(ref_sysroot, f"origin:{packaged_repo.ref}").returncode == 0
    proc = apt_ostree(ref_sysroot, "cleanup", "-r")
    assert proc.returncode == 0, proc.stderr
    assert "ostree/container/" not in ostree("refs", repo)
    fsck(ref_sysroot)


def test_a_signed_reference_is_refused_where_skopeo_cannot_check_the_policy(
    ref_sysroot: Path, images: Images
) -> None:
    proxy = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout
    if not proxy.startswith("skopeo version 1.9."):
        pytest.skip("this skopeo checks the signature policy in its image proxy")
    line = _error(_rebase(ref_sysroot, f"ostree-image-signed:oci:{images.layout}:v1"))
    assert "cannot check signatures" in line
