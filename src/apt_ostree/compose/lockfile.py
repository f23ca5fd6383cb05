"""Lockfiles: the exact package set of a compose, written once and composed again.

rpm-ostree's `--ex-write-lockfile-to`, `--ex-lockfile` and `--ex-lockfile-strict`,
in JSON (docs/compose.md describes the format):

    {"packages": {"NAME": {"version": "V", "arch": "A", "digest": "sha256:HEX"}, ...},
     "metadata": {"generated": "RFC 3339 time", "source-date-epoch": SECONDS}}

Several lockfiles merge in order: a later one's entry for a package replaces an
earlier one's, and the last `source-date-epoch` given wins. Every file is
validated whole before a compose starts; an error names the file and the key.
`Lockfile.source_date_epoch` is the time that reproducible composes use as
SOURCE_DATE_EPOCH: when written, the newest `Date:` of the sources' Release
files (the time of writing when none has one).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.debian.packages import IndexDigests, LockedPackage, PackageInfo
from apt_ostree.errors import LockfileError

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$")
_ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_ENTRY_KEYS = {"version", "arch", "digest"}
_METADATA_KEYS = {"generated", "source-date-epoch"}


@dataclass
class Lockfile:
    """The merged lockfiles: the locked packages by name, and the metadata that came along."""

    packages: dict[str, LockedPackage] = field(default_factory=dict)
    source_date_epoch: int | None = None


def _fail(path: Path, key: str, message: str) -> LockfileError:
    where = f'key "{key}": ' if key else ""
    return LockfileError(f"{path}: {where}{message}")


def _entry(path: Path, name: str, value: Any) -> LockedPackage:
    key = f"packages.{name}"
    if not _PACKAGE_NAME.match(name):
        raise _fail(path, key, "not a Debian package name")
    if not isinstance(value, dict):
        raise _fail(path, key, 'expected a mapping with "version", "arch" and "digest"')
    if unknown := sorted(set(value) - _ENTRY_KEYS):
        raise _fail(path, f"{key}.{unknown[0]}", "unknown key")
    version = value.get("version")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise _fail(path, f"{key}.version", "expected a Debian version string")
    arch = value.get("arch")
    if arch is not None and not (isinstance(arch, str) and _ARCH.match(arch)):
        raise _fail(path, f"{key}.arch", "expected an architecture name")
    digest = value.get("digest")
    sha256 = None
    if digest is not None:
        match = _DIGEST.match(digest) if isinstance(digest, str) else None
        if match is None:
            raise _fail(path, f"{key}.digest", 'expected "sha256:" and 64 hex digits')
        sha256 = match[1]
    return LockedPackage(name, version, arch, sha256)


def _metadata(path: Path, value: Any) -> int | None:
    if not isinstance(value, dict):
        raise _fail(path, "metadata", "expected a mapping")
    if unknown := sorted(set(value) - _METADATA_KEYS):
        raise _fail(path, f"metadata.{unknown[0]}", "unknown key")
    if "generated" in value and not isinstance(value["generated"], str):
        raise _fail(path, "metadata.generated", "expected a string")
    epoch = value.get("source-date-epoch")
    if epoch is not None and (type(epoch) is not int or epoch < 0):
        raise _fail(path, "metadata.source-date-epoch", "expected a non-negative integer")
    return epoch


def read_lockfile(path: Path) -> Lockfile:
    """One lockfile, validated."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _fail(path, "", f"cannot read it: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, "", f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise _fail(path, "", "expected a JSON object")
    if unknown := sorted(set(data) - {"packages", "metadata"}):
        raise _fail(path, unknown[0], "unknown key")
    if not isinstance(data.get("packages"), dict):
        raise _fail(path, "packages", "expected a mapping of package names")
    packages = {name: _entry(path, name, value) for name, value in data["packages"].items()}
    epoch = _metadata(path, data["metadata"]) if "metadata" in data else None
    return Lockfile(packages, epoch)


def load_lockfiles(paths: Sequence[Path]) -> Lockfile:
    """`paths` merged in order: a later file's entries replace an earlier one's."""
    merged = Lockfile()
    for path in paths:
        lock = read_lockfile(path)
        merged.packages.update(lock.packages)
        if lock.source_date_epoch is not None:
            merged.source_date_epoch = lock.source_date_epoch
    return merged


def lockfile_json(packages: Sequence[PackageInfo], digests: IndexDigests) -> dict[str, Any]:
    """The lockfile of a resolved package set, with the .deb checksums of its indexes."""
    now = int(time.time())
    return {
        "packages": {
            p.name: {
                "version": p.version,
                "arch": p.arch,
                "digest": f"sha256:{digests.sha256[p.name]}",
            }
            for p in sorted(packages)
        },
        "metadata": {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "source-date-epoch": digests.index_date if digests.index_date is not None else now,
        },
    }


def write_lockfile(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (a reader sees the old file or the new one)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    directory = path.absolute().parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as e:
        raise LockfileError(f"cannot write the lockfile {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise LockfileError(f"cannot write the lockfile {path}: {e.strerror}") from None
