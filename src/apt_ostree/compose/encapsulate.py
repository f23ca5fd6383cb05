"""`compose container-encapsulate`: an OSTree commit as a bootable OCI image.

The format is ostree-ext's (docs/oci.md): layer 0 holds the commit and its
structure, the other layers the content split by package. The same commit and
options give the same bytes, hence the same image digest.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.compose.chunking import Component, pack, package_components
from apt_ostree.errors import AptOstreeError, RepoError
from apt_ostree.oci import (
    BOOTABLE_LABEL,
    BOOTC_LABEL,
    COMPONENT_SEPARATOR,
    COMPONENTS_ANNOTATION,
    CONFIG_MEDIA_TYPE,
    FINAL_DIFFID_LABEL,
    LINUX_LABEL,
    MANIFEST_MEDIA_TYPE,
    OSTREE_COMMIT_LABEL,
    VERSION_LABEL,
    skopeo,
)
from apt_ostree.oci.imgref import ImageReference, parse_image_reference
from apt_ostree.oci.layout import Layer, OciError, OciLayout, canonical_json, write_archive
from apt_ostree.oci.ostreetar import CommitReader, write_chunk_layer, write_commit_layer
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter, Reporter

DEFAULT_MAX_LAYERS = 64
FORMAT_VERSIONS = (1, 2)
# Commit metadata key for the image's default command (ostree-ext's name).
CMD_METADATA_KEY = "ostree.container-cmd"
# Debian architecture -> OCI (GOARCH, variant).
OCI_ARCHITECTURES = {
    "amd64": ("amd64", None), "arm64": ("arm64", None), "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"), "i386": ("386", None), "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None), "riscv64": ("riscv64", None), "mips64el": ("mips64le", None),
}  # fmt: skip


@dataclass
class EncapsulateRequest:
    repo: Path
    ref: str  # a ref or a commit checksum
    imgref: str
    labels: dict[str, str] = field(default_factory=dict)
    image_config: Path | None = None
    cmd: list[str] | None = None
    max_layers: int = DEFAULT_MAX_LAYERS
    format_version: int = 1
    previous_build_manifest: str | None = None  # a manifest JSON file or an image reference
    arch: str | None = None
    authfile: Path | None = None


@dataclass
class EncapsulateResult:
    commit: str
    digest: str  # of the manifest
    layers: list[tuple[str, list[str]]]  # (layer digest, components); layer 0 first


def _labels_from_commit(metadata: dict[str, Any]) -> dict[str, str]:
    labels = {}
    if isinstance(metadata.get("version"), str):
        labels[VERSION_LABEL] = metadata["version"]
    if isinstance(metadata.get(BOOTABLE_LABEL), bool):
        labels[BOOTABLE_LABEL] = "true" if metadata[BOOTABLE_LABEL] else "false"
        if metadata[BOOTABLE_LABEL]:
            labels[BOOTC_LABEL] = "1"
    if isinstance(metadata.get(LINUX_LABEL), str):
        labels[LINUX_LABEL] = metadata[LINUX_LABEL]
    return labels


def _architecture(metadata: dict[str, Any], requested: str | None) -> tuple[str, str | None]:
    arch = requested
    if arch is None:
        packages = metadata.get("apt-ostree.packages") or []
        archs = Counter(a for _, _, a in packages if a != "all")
        dpkg = [a for name, _, a in packages if name == "dpkg"]
        arch = dpkg[0] if dpkg else (archs.most_common(1)[0][0] if archs else None)
    if arch is None:
        raise AptOstreeError("cannot tell the commit's architecture: pass --arch")
    if arch not in OCI_ARCHITECTURES:
        raise AptOstreeError(f"unknown architecture {arch!r}")
    return OCI_ARCHITECTURES[arch]


def _image_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AptOstreeError(f"--image-config {path}: {e}") from e
    if not isinstance(value, dict):
        raise AptOstreeError(f"--image-config {path}: expected a JSON object (an image config)")
    return value


def _prior_groups(manifest: Any) -> list[list[str]] | None:
    """The component groups of a previous build's layers, None if it has none."""
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list) or len(layers) < 2:
        return None
    groups = []
    for layer in layers[1:]:
        value = (layer.get("annotations") or {}).get(COMPONENTS_ANNOTATION)
        if value is None:
            return None  # derived layers or another format: start afresh
        groups.append([n for n in value.split(COMPONENT_SEPARATOR) if n])
    return groups


def read_manifest(source: str, authfile: Path | None = None) -> Any:
    """A manifest from a JSON file, an OCI layout/archive or (with skopeo) a registry."""
    path = Path(source)
    if path.is_file() and not source.startswith(("oci:", "oci-archive:")):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise OciError(f"{source} is not a JSON manifest: {e}") from e
    ref = parse_image_reference(source)
    if ref.transport == "oci":
        layout = OciLayout.open(ref.path)
        return layout.read_json_blob(layout.manifest_descriptor(ref.tag))
    return skopeo.inspect_raw(ref, authfile=authfile)


def _layer_name(group: list[Component]) -> str:
    names = [c.name for c in group]
    return names[0] if len(names) == 1 else f"{len(names)} components"


@contextmanager
def _target_layout(dest: ImageReference) -> Iterator[OciLayout]:
    """The layout to write: the destination itself for oci:, else a temporary one."""
    if dest.transport == "oci":
        created = not dest.path.exists()
        try:
            yield OciLayout.create(dest.path)
        except BaseException:
            # A new directory goes again; an existing layout keeps its images
            # (blobs written for this one are unreferenced, as after a crash).
            if created:
                shutil.rmtree(dest.path, ignore_errors=True)
            raise
        return
    tmp = Path(tempfile.mkdtemp(prefix="apt-ostree-oci-", dir="/var/tmp"))
    try:
        yield OciLayout.create(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encapsulate(req: EncapsulateRequest, reporter: Reporter | None = None) -> EncapsulateResult:
    reporter = reporter or NullReporter()
    dest = parse_image_reference(req.imgref)
    if req.format_version not in FORMAT_VERSIONS:
        raise AptOstreeError(f"--format-version must be 1 or 2, not {req.format_version}")
    if req.max_layers < 1:
        raise AptOstreeError("--max-layers must be at least 1")
    if dest.transport == "oci":
        OciLayout.check_path(dest.path)
    if dest.transport == "oci-archive" and not dest.path.parent.is_dir():
        raise OciError(f"{dest.path.parent} is not a directory")
    extra_config = _image_config(req.image_config)
    repo = ostree_repo.open_repo(req.repo)
    checksum = ostree_repo.resolve_ref(repo, req.ref)
    if checksum is None:
        raise RepoError(f"{req.repo} has no ref or commit {req.ref!r}")
    info = ostree_repo.read_commit(repo, checksum)
    architecture, variant = _architecture(info.metadata, req.arch)
    prior = None
    if req.previous_build_manifest:
        prior = _prior_groups(read_manifest(req.previous_build_manifest, req.authfile))

    reporter.task_begin(f"Reading commit {checksum[:12]}")
    reader = CommitReader(repo, checksum)
    walk = reader.walk()
    components = package_components(reader, walk)
    groups = pack(components, req.max_layers - 1, prior)
    reporter.task_end(f"{len(walk.objects)} objects, {len(components)} components")
    in_groups = {c.name for group in groups for c in group}
    remainder = [x for c in components if c.name not in in_groups for x in c.checksums]
    parent_dirs = req.format_version == 2

    with _target_layout(dest) as layout:
        reporter.task_begin(f"Writing {len(groups) + 1} layers")
        layers: list[tuple[Layer, str, list[str]]] = []
        writer = layout.new_layer()
        try:
            write_commit_layer(reader, walk, remainder, writer.stream, parent_dirs)
        except BaseException:
            writer.abort()
            raise
        layers.append((writer.finish(), info.subject or f"ostree commit {checksum}", []))
        for i, group in enumerate(groups, start=1):
            names = sorted(c.name for c in group)
            reporter.info(f"layer {i}/{len(groups)}: {_layer_name(group)}")
            writer = layout.new_layer()
            try:
                objects = [x for c in group for x in c.checksums]
                write_chunk_layer(reader, walk, objects, writer.stream, parent_dirs)
            except BaseException:
                writer.abort()
                raise
            layers.append(
                (
                    writer.finish(**{COMPONENTS_ANNOTATION: COMPONENT_SEPARATOR.join(names)}),
                    _layer_name(group),
                    names,
                )
            )
        reporter.task_end("")

        labels = _labels_from_commit(info.metadata)
        labels[OSTREE_COMMIT_LABEL] = checksum
        labels[FINAL_DIFFID_LABEL] = layers[-1][0].diff_id
        labels.update(req.labels)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.timestamp))
        container_config = dict(extra_config)
        container_config["Labels"] = {**(container_config.get("Labels") or {}), **labels}
        cmd = req.cmd if req.cmd is not None else info.metadata.get(CMD_METADATA_KEY)
        if cmd:
            container_config["Cmd"] = list(cmd)
        config: dict[str, Any] = {
            "architecture": architecture,
            "os": "linux",
            "created": created,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer, _, _ in layers]},
            "history": [{"created": created, "created_by": name} for _, name, _ in layers],
        }
        if variant:
            config["variant"] = variant
        config_desc = layout.write_json_blob(config, CONFIG_MEDIA_TYPE)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config_desc.to_json(),
            "layers": [layer.descriptor.to_json() for layer, _, _ in layers],
            "annotations": labels,
        }
        manifest_desc = layout.write_blob(canonical_json(manifest), MANIFEST_MEDIA_TYPE)
        platform = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        digest = manifest_desc.digest
        if dest.transport == "oci":
            layout.set_manifest(manifest_desc, dest.tag, platform)
        elif dest.transport == "oci-archive":
            layout.set_manifest(manifest_desc, dest.tag, platform)
            write_archive(layout.path, dest.path)
        else:
            layout.set_manifest(manifest_desc, "latest", platform)
            reporter.task_begin(f"Copying to {dest}")
            src = parse_image_reference(f"oci:{layout.path}:latest")
            digest = skopeo.copy(src, dest, authfile=req.authfile)
            reporter.task_end(digest)
    return EncapsulateResult(
        checksum, digest, [(layer.descriptor.digest, names) for layer, _, names in layers]
    )
