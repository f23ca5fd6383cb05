"""An OCI image layout on disk (image-spec's image-layout.md): blobs, index, tags.

Everything written here is byte-for-byte deterministic: JSON with sorted keys,
gzip without a time stamp or a file name, tar archives with fixed metadata.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from apt_ostree.errors import AptOstreeError
from apt_ostree.oci import INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPE, REF_NAME_ANNOTATION

# zlib's default level, as ostree-ext's gzip layers use.
GZIP_LEVEL = 6
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}


class OciError(AptOstreeError):
    """An OCI image or layout is missing, invalid or could not be written."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            value["annotations"] = dict(self.annotations)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Descriptor:
        try:
            return cls(
                value["mediaType"], value["digest"], int(value["size"]),
                dict(value.get("annotations") or {}),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise OciError(f"invalid OCI descriptor {value!r}") from e


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # "sha256:<hex>" of the uncompressed tar


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what goes through, on its way to `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


class OciLayout:
    """The layout at `path` (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blobs = path / "blobs" / "sha256"

    @staticmethod
    def check_path(path: Path) -> None:
        """Fail unless `path` is a layout, an empty directory or can be made one."""
        if path.exists() and not path.is_dir():
            raise OciError(f"{path} is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / "oci-layout").is_file():
            raise OciError(f"{path} is not an OCI image layout (no oci-layout file; not empty)")
        if not path.exists() and not path.parent.is_dir():
            raise OciError(f"{path.parent} is not a directory")

    @classmethod
    def create(cls, path: Path) -> OciLayout:
        cls.check_path(path)
        layout = cls(path)
        layout.blobs.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / "oci-layout", canonical_json(LAYOUT_FILE))
        return layout

    @classmethod
    def open(cls, path: Path) -> OciLayout:
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise OciError(f"{path} is not an OCI image layout")
        return cls(path)

    def blob_path(self, digest: str) -> Path:
        algo, _, hexdigest = digest.partition(":")
        if (
            algo != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise OciError(f"unsupported or invalid digest {digest!r}")
        return self.blobs / hexdigest

    def write_blob(self, data: bytes, media_type: str, **annotations: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            _write_atomic(path, data)
        return Descriptor(media_type, digest, len(data), annotations)

    def write_json_blob(self, value: Any, media_type: str) -> Descriptor:
        return self.write_blob(canonical_json(value), media_type)

    def read_blob(self, descriptor: Descriptor) -> bytes:
        path = self.blob_path(descriptor.digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise OciError(f"{self.path}: blob {descriptor.digest} is missing") from e
        if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
            raise OciError(f"{self.path}: blob {descriptor.digest} does not match its digest")
        return data

    def read_json_blob(self, descriptor: Descriptor) -> Any:
        try:
            return json.loads(self.read_blob(descriptor))
        except ValueError as e:
            raise OciError(f"{self.path}: blob {descriptor.digest} is not JSON") from e

    def new_layer(self) -> LayerWriter:
        return LayerWriter(self)

    def index(self) -> dict[str, Any]:
        path = self.path / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        try:
            value = json.loads(path.read_bytes())
        except ValueError as e:
            raise OciError(f"{path} is not JSON") from e
        if not isinstance(value, dict) or not isinstance(value.get("manifests"), list):
            raise OciError(f"{path} is not an OCI index")
        return value

    def manifest_descriptor(self, tag: str | None) -> Descriptor:
        """The manifest tagged `tag`, or the only one when `tag` is None."""
        manifests = [Descriptor.from_json(m) for m in self.index()["manifests"]]
        if tag is None:
            if len(manifests) != 1:
                raise OciError(f"{self.path} has {len(manifests)} images: name one with :TAG")
            return manifests[0]
        for m in manifests:
            if m.annotations.get(REF_NAME_ANNOTATION) == tag:
                return m
        raise OciError(f"{self.path} has no image tagged {tag!r}")

    def set_manifest(self, manifest: Descriptor, tag: str | None, platform: dict[str, str]) -> None:
        """Point `tag` at `manifest` (other tags stay); without a tag, it becomes the only image."""
        entry = manifest.to_json()
        entry["platform"] = platform
        if tag is None:
            manifests = [entry]
        else:
            entry["annotations"] = {REF_NAME_ANNOTATION: tag}
            manifests = [
                m
                for m in self.index()["manifests"]
                if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) != tag
            ]
            manifests.append(entry)
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        _write_atomic(self.path / "index.json", canonical_json(index))


class LayerWriter:
    """A gzip-compressed layer blob, written as a stream: `write` uncompressed tar data."""

    def __init__(self, layout: OciLayout) -> None:
        self.layout = layout
        fd, name = tempfile.mkstemp(prefix=".layer-", dir=layout.blobs)
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._compressed = _HashingWriter(self._file)
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=self._compressed, mtime=0
        )
        self._uncompressed = _HashingWriter(self._gzip)  # type: ignore[arg-type]

    @property
    def stream(self) -> BinaryIO:
        return self._uncompressed  # type: ignore[return-value]

    def finish(self, **annotations: str) -> Layer:
        self._gzip.close()
        self._file.close()
        digest = "sha256:" + self._compressed.sha256.hexdigest()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.layout.blob_path(digest))
        descriptor = Descriptor(LAYER_MEDIA_TYPE, digest, self._compressed.size, annotations)
        return Layer(descriptor, "sha256:" + self._uncompressed.sha256.hexdigest())

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(name, 0o644)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def write_archive(layout: Path, archive: Path) -> None:
    """An oci-archive: the layout as one tar (fixed order and metadata), written atomically."""
    fd, name = tempfile.mkstemp(prefix=f".{archive.name}-", dir=archive.parent)
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(p for p in layout.rglob("*") if not p.name.startswith(".")):
                info = tarfile.TarInfo(str(path.relative_to(layout)))
                info.mode = 0o755 if path.is_dir() else 0o644
                if path.is_dir():
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = path.stat().st_size
                    with path.open("rb") as src:
                        tar.addfile(info, src)
        os.chmod(name, 0o644)
        os.replace(name, archive)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def extract_archive(archive: Path, dest: Path) -> OciLayout:
    """Unpack an oci-archive into the empty directory `dest`; only plain files and dirs."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                if not (member.isfile() or member.isdir()):
                    raise OciError(f"{archive}: unexpected entry {member.name!r}")
            tar.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as e:
        raise OciError(f"cannot read the OCI archive {archive}: {e}") from e
    return OciLayout.open(dest)
