"""Pulling a bootable container image into the sysroot's repo, as ostree-ext does.

The manifest and config come first (that is all `upgrade --check` fetches); an
image is refused before any layer moves when it is not bootable
(`containers.bootc` / `ostree.bootable`), is built for another architecture or
has an unusable layout. Then only the layers that are not in the repo yet are
fetched:

- `ostree/container/blob/<digest>` records a stored layer: for layer 0 the
  ostree commit it carries, for a chunk layer a commit listing its objects,
  for a derived layer the commit of its (filtered) tree;
- `ostree/container/image/<transport:name>` is the merge commit that is
  deployed: the base commit's tree with the derived layers applied, parent =
  the base commit, metadata `ostree.manifest-digest`, `ostree.manifest`,
  `ostree.container.image-config` and the package list read from the dpkg
  database of the merged tree.

All writes happen in one repo transaction and every ref is set at its end, so a
failed fetch (unreachable, digest mismatch, corrupt object) stores no ref.
"""

from __future__ import annotations

import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from apt_ostree.debian.dpkgdb import packages_from_status
from apt_ostree.errors import AptOstreeError
from apt_ostree.oci.ostreeref import (
    BLOB_PREFIX,
    IMAGE_PREFIX,
    ImageReference,
    blob_ref,
    image_ref,
)
from apt_ostree.oci.proxy import FetchError, ImageProxy, VerifiedReader
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.repo import CommitInfo
from apt_ostree.reporter import Reporter
from apt_ostree.system import imagetar
from apt_ostree.system.pull import PullResult

MANIFEST_DIGEST_KEY = "ostree.manifest-digest"
MANIFEST_KEY = "ostree.manifest"
CONFIG_KEY = "ostree.container.image-config"
PACKAGES_KEY = "apt-ostree.packages"
_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
_OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
             "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}  # fmt: skip
# The proxy checks the containers signature policy in OpenImage from this version on.
_POLICY_PROTOCOL = (0, 2, 6)


class ImageError(AptOstreeError):
    pass


@dataclass
class ImageInfo:
    """An image's manifest and config, as fetched."""

    reference: ImageReference
    digest: str
    manifest: dict[str, Any]
    manifest_json: str
    config: dict[str, Any]
    config_json: str

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers") or [])

    @property
    def version(self) -> str | None:
        return self.labels.get("org.opencontainers.image.version") or None

    def ostree_layer_count(self) -> int:
        """How many leading layers are ostree layers (0: a flat image, all derived)."""
        if "ostree.commit" not in self.labels:
            return 0
        final = self.labels.get("ostree.final-diffid")
        if not final:
            return 1
        diff_ids = list((self.config.get("rootfs") or {}).get("diff_ids") or [])
        if final not in diff_ids:
            raise ImageError(f"{self.reference}: ostree.final-diffid {final} is not a layer")
        return diff_ids.index(final) + 1


def host_architecture() -> str:
    machine = os.uname().machine
    return _OCI_ARCH.get(machine, machine)


def check_bootable(info: ImageInfo) -> None:
    labels = info.labels
    if labels.get("containers.bootc") != "1" and labels.get("ostree.bootable") not in ("true", "1"):
        raise ImageError(
            f"{info.reference} is not a bootable image (no containers.bootc=1 or"
            " ostree.bootable label)"
        )
    arch = info.config.get("architecture")
    if arch and arch != host_architecture():
        raise ImageError(
            f"{info.reference} is built for {arch}, this machine is {host_architecture()}"
        )
    for layer in info.layers:
        if layer.get("mediaType") not in _LAYER_TYPES:
            raise ImageError(f"{info.reference}: unsupported layer type {layer.get('mediaType')}")


def _protocol(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


class _Session:
    """One open image in a skopeo proxy."""

    def __init__(self, reference: ImageReference) -> None:
        self.reference = reference
        self.proxy = ImageProxy()
        try:
            if reference.signed and _protocol(self.proxy.protocol) < _POLICY_PROTOCOL:
                raise ImageError(
                    f"{reference}: this skopeo (image proxy {self.proxy.protocol}) cannot"
                    " check signatures; use ostree-unverified-image: or a newer skopeo"
                )
            self.image = int(self.proxy.call("OpenImage", reference.skopeo_ref)[0])
        except FetchError as e:
            self.proxy.close()
            raise ImageError(f"cannot fetch {reference}: {e}") from e
        except BaseException:
            self.proxy.close()
            raise

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.close()

    def info(self) -> ImageInfo:
        try:
            digest, manifest = self.proxy.read_all("GetManifest", self.image)
            _, config = self.proxy.read_all("GetFullConfig", self.image)
            return ImageInfo(
                self.reference, str(digest), json.loads(manifest), manifest.decode(),
                json.loads(config), config.decode(),
            )  # fmt: skip
        except FetchError as e:
            raise ImageError(f"cannot fetch {self.reference}: {e}") from e
        except ValueError as e:
            raise ImageError(f"{self.reference}: invalid manifest or config: {e}") from e


def inspect_image(reference: ImageReference) -> ImageInfo:
    """Manifest and config only (no layer)."""
    with _Session(reference) as session:
        info = session.info()
    check_bootable(info)
    return info


# -- storing layers ------------------------------------------------------------------


@dataclass
class _Import:
    repo: OSTree.Repo
    refs: dict[str, str] = field(default_factory=dict)
    fetched: int = 0
    layers_fetched: int = 0

    def stored(self, digest: str) -> str | None:
        return ostree_repo.resolve_ref(self.repo, blob_ref(digest))


def _fetch_layer(
    session: _Session, layer: dict[str, Any], reporter: Reporter, work: _Import, consume: Any
) -> Any:
    digest, size = str(layer["digest"]), int(layer.get("size") or 0)
    reporter.task_begin(f"Fetching layer {digest[7:19]} ({size} bytes)")
    try:
        with session.proxy.blob(session.image, digest, size) as raw:
            reader = VerifiedReader(raw, digest, lambda n: None)
            try:
                result = consume(reader)
            except (tarfile.TarError, zlib.error, EOFError) as e:
                reader.check()  # a corrupt blob is the likelier cause: say so
                raise ImageError(
                    f"{session.reference}: layer {digest} is not a valid tar: {e}"
                ) from e
            reader.check()
    except FetchError as e:
        raise ImageError(f"cannot fetch {session.reference}: {e}") from e
    work.fetched += reader.count
    work.layers_fetched += 1
    reporter.task_end()
    return result


def _object_set_commit(repo: OSTree.Repo, content: list[str], digest: str) -> str:
    """A commit whose tree names each content object of a chunk layer (ostree-ext's
    object set), so that the blob ref keeps those objects alive."""
    mtree = OSTree.MutableTree.new()
    mtree.set_metadata_checksum(imagetar.write_dirmeta(repo, 0, 0, 0o755, imagetar.empty_xattrs()))
    for checksum in sorted(set(content)):
        mtree.replace_file(checksum, checksum)
    return _commit_mtree(repo, mtree, None, f"layer {digest}", {}, 0)


def _commit_mtree(
    repo: OSTree.Repo,
    mtree: Any,
    parent: str | None,
    subject: str,
    metadata: dict[str, Any],
    timestamp: int,
) -> str:
    _, root = repo.write_mtree(mtree, None)
    meta = GLib.Variant("a{sv}", metadata)
    _, checksum = repo.write_commit_with_time(parent, subject, None, meta, root, timestamp, None)
    return str(checksum)


def _missing_objects(repo: OSTree.Repo, commit: str) -> int:
    _, reachable = repo.traverse_commit(commit, 0, None)
    missing = 0
    for key in reachable:
        name, objtype = OSTree.object_name_deserialize(key)
        if not repo.has_object(objtype, name, None)[1]:
            missing += 1
    return missing


def _import_ostree_layers(
    session: _Session, info: ImageInfo, count: int, work: _Import, reporter: Reporter
) -> str:
    commit = info.labels["ostree.commit"]
    for index, layer in enumerate(info.layers[:count]):
        digest = str(layer["digest"])
        if work.stored(digest):
            continue
        stored = _fetch_layer(
            session, layer, reporter, work,
            lambda r: imagetar.import_object_layer(work.repo, r),
        )  # fmt: skip
        if index == 0:
            if stored.commit != commit:
                raise ImageError(f"{info.reference}: layer 0 does not hold commit {commit}")
            work.refs[blob_ref(digest)] = commit
        else:
            work.refs[blob_ref(digest)] = _object_set_commit(work.repo, stored.content, digest)
    if not ostree_repo.commit_exists(work.repo, commit):
        raise ImageError(f"{info.reference}: commit {commit} is not in the image")
    missing = _missing_objects(work.repo, commit)
    if missing:
        raise ImageError(f"{info.reference}: the image lacks {missing} object(s) of {commit}")
    return commit


def _import_derived_layers(
    session: _Session, info: ImageInfo, first: int, work: _Import, reporter: Reporter
) -> list[str]:
    commits = []
    for layer in info.layers[first:]:
        digest = str(layer["digest"])
        stored = work.stored(digest) or work.refs.get(blob_ref(digest))
        if stored is None:
            mtree = _fetch_layer(
                session, layer, reporter, work,
                lambda r: imagetar.import_derived_layer(work.repo, r),
            )  # fmt: skip
            stored = _commit_mtree(work.repo, mtree, None, f"layer {digest}", {}, 0)
            work.refs[blob_ref(digest)] = stored
        commits.append(stored)
    return commits


def _mtree_file(repo: OSTree.Repo, mtree: Any, path: str) -> bytes | None:
    """The content of a regular file in a MutableTree, or None."""
    *parents, name = path.split("/")
    node = mtree
    for part in parents:
        node = node.get_subdirs().get(part)
        if node is None:
            return None
    checksum = node.get_files().get(name)
    if checksum is None:
        return None
    _, stream, file_info, _ = repo.load_file(checksum, None)
    if stream is None:
        return None
    data = stream.read_bytes(file_info.get_size(), None)
    return bytes(data.get_data() or b"")


def _merge(
    work: _Import, info: ImageInfo, base: str | None, derived: list[str], created: int
) -> str:
    repo = work.repo
    metadata: dict[str, Any] = {}
    if base is not None:
        base_info = ostree_repo.read_commit(repo, base)
        metadata.update(ostree_repo.read_commit_metadata_variants(repo, base))
        mtree = OSTree.MutableTree.new_from_commit(repo, base)
        timestamp = base_info.timestamp
    else:
        mtree = OSTree.MutableTree.new()
        mtree.set_metadata_checksum(
            imagetar.write_dirmeta(repo, 0, 0, 0o755, imagetar.empty_xattrs())
        )
        timestamp = created
        metadata["ostree.bootable"] = GLib.Variant("b", True)
    for layer in derived:
        _, root, _ = repo.read_commit(layer, None)
        imagetar.apply_layer(repo, mtree, root)
    if derived or base is None:
        status = _mtree_file(repo, mtree, "usr/share/dpkg/database/status")
        if status is not None:
            packages = packages_from_status(status.decode("utf-8", "replace"))
            metadata[PACKAGES_KEY] = GLib.Variant(
                "a(sss)", [(p.name, p.version, p.arch) for p in packages]
            )
    if info.version:
        metadata["version"] = GLib.Variant("s", info.version)
    metadata[MANIFEST_DIGEST_KEY] = GLib.Variant("s", info.digest)
    metadata[MANIFEST_KEY] = GLib.Variant("s", info.manifest_json)
    metadata[CONFIG_KEY] = GLib.Variant("s", info.config_json)
    return _commit_mtree(repo, mtree, base, str(info.reference), metadata, timestamp)


def image_created(info: ImageInfo) -> int:
    """The image's `created` time (seconds since the epoch; 0 if absent)."""
    created = str(info.config.get("created") or "")
    try:
        from datetime import UTC, datetime

        return int(datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


def pull_image(
    repo: OSTree.Repo, reference: ImageReference, reporter: Reporter
) -> tuple[CommitInfo, ImageInfo, PullResult]:
    """Fetch the missing layers of `reference` and store the image; return the
    merge commit to deploy, the image's manifest/config and what was fetched."""
    work = _Import(repo)
    with _Session(reference) as session:
        reporter.task_begin(f"Fetching the manifest of {reference}")
        info = session.info()
        check_bootable(info)
        reporter.task_end(info.digest)
        work.fetched = len(info.manifest_json) + len(info.config_json)
        count = info.ostree_layer_count()
        try:
            repo.prepare_transaction(None)
            try:
                base = (
                    _import_ostree_layers(session, info, count, work, reporter) if count else None
                )
                derived = _import_derived_layers(session, info, count, work, reporter)
                merge = _merge(work, info, base, derived, image_created(info))
                work.refs[image_ref(reference)] = merge
                for ref, checksum in work.refs.items():
                    repo.transaction_set_ref(None, ref, checksum)
                repo.commit_transaction(None)
            except BaseException:
                repo.abort_transaction(None)
                raise
        except GLib.Error as e:
            raise ImageError(f"cannot store {reference}: {e.message}") from e
    pulled = PullResult(bytes_transferred=work.fetched, objects_fetched=work.layers_fetched)
    total = sum(int(layer.get("size") or 0) for layer in info.layers)
    reporter.message(
        f"Fetched image: {work.fetched} bytes (manifest, config and {work.layers_fetched} of"
        f" {len(info.layers)} layers; {total} bytes of layers in the image)"
    )
    return ostree_repo.read_commit(repo, merge), info, pulled


def manifest_digest(commit: CommitInfo) -> str | None:
    value = commit.metadata.get(MANIFEST_DIGEST_KEY)
    return str(value) if value else None


def prune_image_refs(repo: OSTree.Repo, origins: list[ImageReference]) -> int:
    """Drop the image and layer refs that no deployment's image needs (ostree-ext's
    image prune); the repo prune that follows removes their objects. Returns the
    number of refs removed."""
    _, refs = repo.list_refs(None, None)
    keep: set[str] = set()
    for reference in origins:
        name = image_ref(reference)
        checksum = refs.get(name)
        if checksum is None:
            continue
        keep.add(name)
        manifest = ostree_repo.read_commit(repo, checksum).metadata.get(MANIFEST_KEY)
        for layer in json.loads(str(manifest or "{}")).get("layers") or []:
            keep.add(blob_ref(str(layer.get("digest"))))
    removed = 0
    for name in sorted(refs):
        if name.startswith((IMAGE_PREFIX + "/", BLOB_PREFIX + "/")) and name not in keep:
            repo.set_ref_immediate(None, name, None, None)
            removed += 1
    return removed
