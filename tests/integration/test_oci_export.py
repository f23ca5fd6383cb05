"""`compose container-encapsulate`: a commit becomes an OCI image in ostree-ext's format.

The image is checked with the real consumers: GNU tar and `ostree fsck` on the
repo the layers carry, umoci, skopeo and a docker-registry on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.oci.layout import Descriptor, OciLayout
from tests.fixtures.ocitrees import (
    KVER,
    LONG_NAME,
    REPO_DIR,
    XATTR,
    PackagedRepo,
    extract_layers,
    layer_paths,
    ostree,
)
from tests.fixtures.registry import Registry
from tests.fixtures.sysroot import apt_ostree


def encapsulate(repo: PackagedRepo, version: str, imgref: str, *args: str) -> str:
    """Encapsulate commit `version`; return the digest the command printed."""
    proc = apt_ostree(
        None, "compose", "container-encapsulate", "--repo", repo.path,
        repo.commits[version], imgref, *args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("Pushed digest: ", 1)[1].strip()


def manifest_of(layout_dir: Path, tag: str | None) -> dict[str, Any]:
    layout = OciLayout.open(layout_dir)
    result: dict[str, Any] = layout.read_json_blob(layout.manifest_descriptor(tag))
    return result


@dataclass(frozen=True)
class Image:
    layout: Path  # tagged v1
    digest: str

    @property
    def manifest(self) -> dict[str, Any]:
        return manifest_of(self.layout, "v1")

    @property
    def layers(self) -> list[Path]:
        return layer_paths(self.layout, self.manifest)


@pytest.fixture(scope="module")
def image(packaged_repo: PackagedRepo, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Commit v1 as oci:DIR:v1 with a label, an image config and a command: the
    tests that only read an image share it."""
    work = tmp_path_factory.mktemp("oci-image")
    (work / "config.json").write_text(json.dumps({"Env": ["LANG=C.UTF-8"], "User": "0"}))
    digest = encapsulate(
        packaged_repo, "1", f"oci:{work}/img:v1", "-l", "org.example.built-by=tests",
        "--image-config", str(work / "config.json"), "--cmd", "/usr/bin/sh", "--cmd=-l",
    )  # fmt: skip
    return Image(work / "img", digest)


def test_the_layers_unpack_to_a_repo_that_passes_fsck_and_holds_the_same_commit(
    packaged_repo: PackagedRepo, image: Image, tmp_path: Path
) -> None:
    commit = packaged_repo.commits["1"]
    extract_layers(image.layers, tmp_path / "root")
    repo = tmp_path / "root" / REPO_DIR
    assert "mode=bare-split-xattrs" in (repo / "config").read_text()
    fsck = ostree("fsck", f"--repo={repo}")
    assert "no errors found" in fsck
    # Every file with the same checksum, mode and owner: the same commit.
    original = ostree("ls", f"--repo={packaged_repo.path}", "-R", "-C", "-X", commit)
    assert ostree("ls", f"--repo={repo}", "-R", "-C", "-X", commit) == original
    assert XATTR[0] in original


def test_layer_zero_holds_the_commit_and_the_tree_structure(
    packaged_repo: PackagedRepo, image: Image
) -> None:
    commit = packaged_repo.commits["1"]
    manifest = image.manifest
    with tarfile.open(image.layers[0]) as tar:
        names = tar.getnames()
    assert names[0] == "."  # "./" in the tar; Python strips the slash of directories
    assert f"{REPO_DIR}/objects/{commit[:2]}/{commit[2:]}.commit" in names
    assert "./usr/lib/pkg-a" in names and "./etc" in names
    assert not any(n.startswith(("usr/etc", "./usr/etc")) for n in names)
    assert "var/tmp" in names
    assert "annotations" not in manifest["layers"][0]


def test_checkout_paths_are_hardlinks_to_objects_with_their_xattrs_first(image: Image) -> None:
    members: dict[str, tarfile.TarInfo] = {}
    order: list[str] = []
    for layer in image.layers:
        with tarfile.open(layer) as tar:
            for member in tar:
                members[member.name] = member
                order.append(member.name)
    data = members["usr/lib/pkg-a/data"]
    assert data.islnk() and data.linkname.startswith(f"{REPO_DIR}/objects/")
    obj = members[data.linkname]
    assert (
        obj.pax_headers[f"SCHILY.xattr.{XATTR[0]}"].encode("utf-8", "surrogateescape") == (XATTR[1])
    )
    assert order.index(data.linkname + "-xattrs-link") == order.index(data.linkname) - 1
    assert members["etc/pkg-a.conf"].islnk() and "usr/etc/pkg-a.conf" not in members
    assert members["usr/bin/pkg-a-suid"].mode == 0o4755
    assert members["usr/lib/pkg-a/empty"].isreg() and members["usr/lib/pkg-a/empty"].size == 0
    assert members[members["usr/lib/pkg-a/link"].linkname].issym()
    assert members[LONG_NAME].islnk()


def test_layers_are_split_by_package_and_labelled(
    packaged_repo: PackagedRepo, image: Image
) -> None:
    commit = packaged_repo.commits["1"]
    layout = OciLayout.open(image.layout)
    manifest = image.manifest
    components = [layer["annotations"]["ostree.components"] for layer in manifest["layers"][1:]]
    assert sorted(components) == [
        "apt-ostree-dpkg-status", "apt-ostree-initramfs", "apt-ostree-unpackaged-content", "dash",
        "pkg-a", "pkg-b", "pkg-big", "pkg-c", "pkg-d",
    ]  # fmt: skip
    # pkg-c and pkg-d ship the same content: one object, both paths in pkg-c's layer.
    pkg_c = image.layers[1 + components.index("pkg-c")]
    with tarfile.open(pkg_c) as tar:
        assert {"usr/lib/pkg-c/same-as-pkg-d", "usr/lib/pkg-d/same-as-pkg-c"} <= set(tar.getnames())
    config = layout.read_json_blob(Descriptor.from_json(manifest["config"]))
    labels = config["config"]["Labels"]
    assert manifest["annotations"] == labels
    assert labels["ostree.commit"] == commit
    assert labels["ostree.final-diffid"] == config["rootfs"]["diff_ids"][-1]
    assert labels["containers.bootc"] == "1" and labels["ostree.bootable"] == "true"
    assert labels["ostree.linux"] == KVER
    assert labels["org.opencontainers.image.version"] == "1.0"
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert labels["org.example.built-by"] == "tests"
    assert config["config"]["Env"] == ["LANG=C.UTF-8"]
    assert config["config"]["Cmd"] == ["/usr/bin/sh", "-l"]


def test_max_layers_lumps_small_packages_and_keeps_big_ones_alone(
    packaged_repo: PackagedRepo, tmp_path: Path
) -> None:
    encapsulate(packaged_repo, "1", f"oci:{tmp_path}/img", "--max-layers", "5")
    manifest = manifest_of(tmp_path / "img", None)
    groups = [
        layer["annotations"]["ostree.components"].split(",") for layer in manifest["layers"][1:]
    ]
    assert len(manifest["layers"]) == 5
    assert ["pkg-big"] in groups
    names = [name for group in groups for name in group]
    assert len(names) == len(set(names)) == 9


def test_format_version_2_writes_the_parent_directories_in_each_layer(
    packaged_repo: PackagedRepo, tmp_path: Path
) -> None:
    encapsulate(packaged_repo, "1", f"oci:{tmp_path}/img", "--format-version", "2")
    manifest = manifest_of(tmp_path / "img", None)
    components = [layer["annotations"]["ostree.components"] for layer in manifest["layers"][1:]]
    pkg_b = layer_paths(tmp_path / "img", manifest)[1 + components.index("pkg-b")]
    with tarfile.open(pkg_b) as tar:
        members = {m.name: m for m in tar}
        names = list(members)
    for directory in ("usr", "usr/lib", "usr/lib/pkg-b", "etc"):
        assert members[directory].isdir()
    assert names.index("usr/lib/pkg-b") < names.index("usr/lib/pkg-b/data")


def test_the_same_commit_gives_the_same_digest_and_bytes(
    packaged_repo: PackagedRepo, tmp_path: Path
) -> None:
    first = encapsulate(packaged_repo, "1", f"oci:{tmp_path}/a:latest")
    second = encapsulate(packaged_repo, "1", f"oci:{tmp_path}/b:latest")
    archive = encapsulate(packaged_repo, "1", f"oci-archive:{tmp_path}/c.tar:latest")
    encapsulate(packaged_repo, "1", f"oci-archive:{tmp_path}/d.tar:latest")
    assert first == second == archive
    assert (tmp_path / "c.tar").read_bytes() == (tmp_path / "d.tar").read_bytes()


def test_an_update_with_the_previous_build_changes_only_the_changed_packages_layers(
    packaged_repo: PackagedRepo, tmp_path: Path
) -> None:
    image = tmp_path / "img"
    encapsulate(packaged_repo, "1", f"oci:{image}:v1")
    encapsulate(
        packaged_repo, "2", f"oci:{image}:v2", "--previous-build-manifest", f"oci:{image}:v1"
    )

    def layers(tag: str) -> dict[str, str]:
        manifest = manifest_of(image, tag)
        return {
            (layer.get("annotations") or {}).get("ostree.components", "<layer 0>"): layer["digest"]
            for layer in manifest["layers"]
        }

    old, new = layers("v1"), layers("v2")
    assert old.keys() == new.keys()
    changed = {name for name in old if old[name] != new[name]}
    # pkg-b itself, dpkg's status and layer 0 (the commit).
    assert changed == {"<layer 0>", "pkg-b", "apt-ostree-dpkg-status"}


def test_skopeo_copies_the_image_to_a_registry_and_reads_its_labels(
    packaged_repo: PackagedRepo, registry: Registry, image: Image
) -> None:
    dest = registry.ref("apt-ostree/copied:v1")
    subprocess.run(
        [*registry.skopeo, "copy", "--quiet", f"oci:{image.layout}:v1", dest], check=True
    )
    inspect = json.loads(
        subprocess.run([*registry.skopeo, "inspect", dest], capture_output=True, check=True).stdout
    )
    assert inspect["Digest"] == image.digest
    assert inspect["Labels"]["ostree.commit"] == packaged_repo.commits["1"]
    assert inspect["Labels"]["containers.bootc"] == "1"
    assert inspect["Labels"]["ostree.final-diffid"].startswith("sha256:")


def test_encapsulate_pushes_straight_to_a_registry_with_the_same_digest(
    packaged_repo: PackagedRepo, registry: Registry, tmp_path: Path
) -> None:
    local = encapsulate(packaged_repo, "1", f"oci:{tmp_path}/img")
    pushed = encapsulate(packaged_repo, "1", registry.ref("apt-ostree/pushed:v1"))
    assert pushed == local
    raw = subprocess.run(
        [*registry.skopeo, "inspect", "--raw", registry.ref("apt-ostree/pushed:v1")],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(raw)["annotations"]["ostree.commit"] == packaged_repo.commits["1"]
    # The previous build read back from the registry: its split kept, the same image.
    again = encapsulate(
        packaged_repo, "1", f"oci:{tmp_path}/again", "--previous-build-manifest",
        registry.ref("apt-ostree/pushed:v1"),
    )  # fmt: skip
    assert again == local


def test_umoci_unpacks_the_image_with_etc_at_the_top(image: Image, tmp_path: Path) -> None:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{image.layout}:v1", tmp_path / "bundle"],
        check=True, capture_output=True,
    )  # fmt: skip
    rootfs = tmp_path / "bundle/rootfs"
    assert (rootfs / "etc/pkg-b.conf").read_text() == "# pkg-b 1.0\n"
    assert (rootfs / "usr/bin/pkg-a").read_text() == "#!/bin/sh\necho pkg-a 1.0\n"
    assert (rootfs / "usr/lib/pkg-big/data").stat().st_size == 3 << 20
    assert (rootfs / REPO_DIR / "config").is_file()


def test_bad_input_fails_with_one_line_and_writes_nothing(
    packaged_repo: PackagedRepo, tmp_path: Path
) -> None:
    (tmp_path / "notalayout").mkdir()
    (tmp_path / "notalayout/file").write_text("x")
    cases = {
        "ftp:somewhere": "invalid image reference",
        f"oci:{tmp_path}/notalayout": "is not an OCI image layout",
    }
    for imgref, message in cases.items():
        proc = apt_ostree(
            None, "compose", "container-encapsulate", "--repo", packaged_repo.path,
            packaged_repo.ref, imgref,
        )  # fmt: skip
        assert proc.returncode == 1 and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = apt_ostree(
        None, "compose", "container-encapsulate", "--repo", packaged_repo.path,
        "no/such/ref", f"oci:{tmp_path}/new",
    )  # fmt: skip
    assert proc.returncode == 1 and "no/such/ref" in proc.stderr
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "notalayout").iterdir()) == [tmp_path / "notalayout/file"]


def test_compose_image_needs_initialize_to_create_its_output(tmp_path: Path) -> None:
    treefile = tmp_path / "tree.yaml"
    treefile.write_text("ref: test/oci/image\nsuite: bookworm\npackages: [systemd]\n")
    output = tmp_path / "image.ociarchive"
    proc = apt_ostree(None, "compose", "image", treefile, output, "--cachedir", tmp_path / "c")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {output} does not exist: pass --initialize to create it"
    assert not output.exists() and not (tmp_path / "c").exists()
