"""The hashes of a treefile: of its merged content, and of everything a compose reads
(the treefile plus the files it names), independent of where the checkout lies.

A compose whose inputs hash equals the previous commit's is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.debian import sources as apt_sources

if TYPE_CHECKING:
    from hashlib import _Hash


def treefile_sha256(merged: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical_json(_location_free(merged))).hexdigest()


def inputs_sha256(merged: dict[str, Any], input_files: list[Path]) -> str:
    """The merged treefile plus the content of every input file: postprocess-script,
    add-files sources (whole directory trees), the key files of `sources`, the
    local-packages .debs. Modes and content, not mtimes, so that it is stable. The
    host's APT sources (when `sources` is absent) are not covered. OSError when an
    input cannot be read."""
    digest = hashlib.sha256(_canonical_json(_location_free(merged)))
    for path in input_files:
        # By name and content: where the input lies does not change the tree.
        digest.update(b"\0input\0" + os.fsencode(path.name) + b"\0")
        _hash_path(digest, path, os.stat(path))
    return digest.hexdigest()


def _location_free(merged: dict[str, Any]) -> dict[str, Any]:
    """`merged` with the paths of input files reduced to their names (their content
    is hashed separately), so that hashes do not depend on the checkout's location."""
    data = dict(merged)
    if "postprocess-script" in data:
        data["postprocess-script"] = Path(data["postprocess-script"]).name
    if "add-files" in data:
        data["add-files"] = [[Path(src).name, dest] for src, dest in data["add-files"]]
    if "local-packages" in data:
        data["local-packages"] = [Path(path).name for path in data["local-packages"]]
    if data.get("sources"):
        keys = apt_sources.signed_by_files(data["sources"])
        stanzas = []
        for stanza in data["sources"]:
            for key in keys:
                stanza = stanza.replace(str(key), key.name)
            stanzas.append(stanza)
        data["sources"] = stanzas
    return data


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash_path(digest: _Hash, path: Path, st: os.stat_result) -> None:
    """Feed type, permission bits, and content (or target, or children) of `path`."""
    mode = f"{stat.S_IMODE(st.st_mode):o}".encode()
    if stat.S_ISLNK(st.st_mode):
        digest.update(b"L" + mode + b"\0" + os.fsencode(os.readlink(path)) + b"\0")
    elif stat.S_ISDIR(st.st_mode):
        digest.update(b"D" + mode + b"\0")
        for child in sorted(os.listdir(path)):
            digest.update(os.fsencode(child) + b"\0")
            _hash_path(digest, path / child, os.lstat(path / child))
        digest.update(b"\0end\0")
    elif stat.S_ISREG(st.st_mode):
        digest.update(b"F" + mode + b"\0" + str(st.st_size).encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    else:
        digest.update(b"O" + mode + b"\0")
