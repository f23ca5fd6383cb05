"""skopeo: copies images between OCI layouts and registries (and reads manifests).

Registry settings (insecure registries, mirrors) come from containers'
registries.conf and the signature policy from policy.json, as for podman.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from apt_ostree.errors import CommandError
from apt_ostree.oci.imgref import ImageReference
from apt_ostree.oci.layout import OciError
from apt_ostree.run import run


def skopeo_command() -> list[str]:
    """skopeo with the registries.conf that CONTAINERS_REGISTRIES_CONF names: skopeo 1.9
    takes it only as a flag."""
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return ["skopeo", "--registries-conf", conf] if conf else ["skopeo"]


def _auth(authfile: Path | None, flag: str) -> list[str]:
    return [flag, str(authfile)] if authfile is not None else []


def copy(src: ImageReference, dest: ImageReference, *, authfile: Path | None = None) -> str:
    """Copy the image, byte for byte (no recompression); return the manifest digest."""
    with tempfile.TemporaryDirectory(prefix="apt-ostree-skopeo-") as tmp:
        digestfile = Path(tmp) / "digest"
        try:
            run(
                [*skopeo_command(), "copy", "--quiet", "--preserve-digests",
                 *_auth(authfile, "--dest-authfile"), "--digestfile", digestfile,
                 str(src), str(dest)],
                what=f"skopeo copy to {dest}",
            )  # fmt: skip
        except CommandError as e:
            raise OciError(f"cannot copy the image to {dest}: {_last_line(e.output)}") from e
        return digestfile.read_text().strip()


def inspect_raw(ref: ImageReference, *, authfile: Path | None = None) -> Any:
    """The image's manifest as JSON."""
    try:
        proc = run(
            [*skopeo_command(), "inspect", "--raw", *_auth(authfile, "--authfile"), str(ref)]
        )
    except CommandError as e:
        raise OciError(f"cannot read the image {ref}: {_last_line(e.output)}") from e
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise OciError(f"the manifest of {ref} is not JSON") from e


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
