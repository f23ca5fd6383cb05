"""Container image references as rpm-ostree and ostree-ext write them.

    ostree-unverified-registry:NAME           a registry image, no signature check
    ostree-unverified-image:TRANSPORT:NAME    oci:PATH[:TAG], oci-archive:PATH, docker://NAME,
                                              registry:NAME, containers-storage:NAME, dir:PATH
    ostree-image-signed:TRANSPORT:NAME        checked against the containers signature policy
                                              (/etc/containers/policy.json)

`ostree-remote-registry:` / `ostree-remote-image:` (signatures from an ostree
remote) are recognized and refused: apt-ostree does not verify them.
"""

from __future__ import annotations

from dataclasses import dataclass

from apt_ostree.errors import AptOstreeError

UNVERIFIED_REGISTRY = "ostree-unverified-registry"
UNVERIFIED_IMAGE = "ostree-unverified-image"
IMAGE_SIGNED = "ostree-image-signed"
_REMOTE = ("ostree-remote-registry", "ostree-remote-image")
PREFIXES = (UNVERIFIED_REGISTRY, UNVERIFIED_IMAGE, IMAGE_SIGNED, *_REMOTE)

# Transport as written in the reference -> skopeo's transport prefix.
_TRANSPORTS = {
    "registry": "docker://",
    "docker": "docker://",
    "oci": "oci:",
    "oci-archive": "oci-archive:",
    "containers-storage": "containers-storage:",
    "dir": "dir:",
}


class ImageRefError(AptOstreeError):
    pass


def is_image_reference(text: str) -> bool:
    return text.split(":", 1)[0] in PREFIXES


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference: how it is verified, where it is and what skopeo calls it."""

    signed: bool
    transport: str  # registry, oci, oci-archive, containers-storage, dir
    name: str  # registry image name or path (with :TAG for oci)

    def __str__(self) -> str:
        if not self.signed and self.transport == "registry":
            return f"{UNVERIFIED_REGISTRY}:{self.name}"
        prefix = IMAGE_SIGNED if self.signed else UNVERIFIED_IMAGE
        return f"{prefix}:{self.transport_ref}"

    @property
    def transport_ref(self) -> str:
        """The image without its verification part, e.g. `registry:HOST/NAME:TAG`."""
        return f"{self.transport}:{self.name}"

    @property
    def skopeo_ref(self) -> str:
        return _TRANSPORTS[self.transport] + self.name


def _parse_transport(text: str, whole: str) -> tuple[str, str]:
    if text.startswith("docker://"):
        transport, name = "registry", text.removeprefix("docker://")
    else:
        transport, sep, name = text.partition(":")
        if not sep:
            raise ImageRefError(
                f'invalid image reference "{whole}": expected TRANSPORT:NAME after the'
                " verification prefix (oci:PATH[:TAG], oci-archive:PATH, docker://NAME, ...)"
            )
        transport = "registry" if transport == "docker" else transport
    if transport not in _TRANSPORTS:
        raise ImageRefError(
            f'invalid image reference "{whole}": unknown transport "{transport}"'
            f" (known: {', '.join(sorted(_TRANSPORTS))})"
        )
    name = name.removeprefix("//") if transport == "registry" else name
    if not name:
        raise ImageRefError(f'invalid image reference "{whole}": the image name is empty')
    if transport in ("oci", "oci-archive", "dir") and not name.startswith("/"):
        raise ImageRefError(f'invalid image reference "{whole}": the path must be absolute')
    return transport, name


def parse_image_reference(text: str) -> ImageReference:
    """Parse an rpm-ostree image reference; a one-line error for anything else."""
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in PREFIXES:
        raise ImageRefError(
            f'invalid image reference "{text}": expected ostree-unverified-registry:NAME,'
            " ostree-unverified-image:TRANSPORT:NAME or ostree-image-signed:TRANSPORT:NAME"
        )
    if prefix in _REMOTE:
        raise ImageRefError(
            f'"{prefix}:" references (signatures from an ostree remote) are not supported;'
            " use ostree-image-signed: with a containers signature policy"
        )
    if prefix == UNVERIFIED_REGISTRY:
        if not rest or "://" in rest:
            raise ImageRefError(f'invalid image reference "{text}": expected a registry image name')
        return ImageReference(False, "registry", rest)
    transport, name = _parse_transport(rest, text)
    return ImageReference(prefix == IMAGE_SIGNED, transport, name)


def _escape_char(c: str) -> str:
    return f"_{ord(c):02X}_"


def escape_for_ref(text: str) -> str:
    """ostree-ext's escaping of an arbitrary string into an ostree ref component."""
    out: list[str] = []
    previous_alnum = False
    for i, c in enumerate(text):
        alnum = c.isascii() and c.isalnum()
        if alnum or c == "-" or (c == "/" and previous_alnum and i + 1 < len(text)):
            out.append(c)
        elif c == "_":
            out.append("__")
        else:
            out.append(_escape_char(c))
        previous_alnum = alnum
    return "".join(out)


BLOB_PREFIX = "ostree/container/blob"
IMAGE_PREFIX = "ostree/container/image"


def blob_ref(digest: str) -> str:
    return f"{BLOB_PREFIX}/{escape_for_ref(digest)}"


def image_ref(ref: ImageReference) -> str:
    return f"{IMAGE_PREFIX}/{escape_for_ref(ref.transport_ref)}"
