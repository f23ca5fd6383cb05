"""Image references as skopeo writes them: `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`,
`docker://HOST/NAME[:TAG|@DIGEST]`, `containers-storage:NAME`, ..."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apt_ostree.oci.layout import OciError

# Transports that skopeo knows; "oci" and "oci-archive" apt-ostree also reads and
# writes itself.
TRANSPORTS = ("oci", "oci-archive", "docker", "containers-storage", "docker-archive", "dir")


@dataclass(frozen=True)
class ImageReference:
    transport: str
    name: str  # for docker: "//host/name:tag"

    def __str__(self) -> str:
        return f"{self.transport}:{self.name}"

    @property
    def is_local_layout(self) -> bool:
        return self.transport in ("oci", "oci-archive")

    @property
    def path(self) -> Path:
        """oci/oci-archive: the directory or archive (a path cannot hold ':')."""
        return Path(self.name.partition(":")[0])

    @property
    def tag(self) -> str | None:
        """oci/oci-archive: the tag after the path, if any."""
        _, sep, tag = self.name.partition(":")
        return tag if sep else None


def parse_image_reference(text: str) -> ImageReference:
    transport, sep, name = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        known = ", ".join(f"{t}:" for t in TRANSPORTS)
        raise OciError(f"invalid image reference {text!r}: expected one of {known}")
    if not name or (transport == "docker" and not name.startswith("//")) or name == "//":
        raise OciError(f"invalid image reference {text!r}: no image name")
    ref = ImageReference(transport, name)
    if ref.is_local_layout and (not ref.name.partition(":")[0] or ref.tag == ""):
        raise OciError(f"invalid image reference {text!r}: expected {transport}:PATH[:TAG]")
    return ref
