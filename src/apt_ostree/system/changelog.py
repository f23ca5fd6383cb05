"""`db diff --changelogs`: what changed in an upgraded package, from the Debian
changelog the package ships (/usr/share/doc/NAME/changelog.Debian.gz), read from
the new commit without a checkout."""

from __future__ import annotations

import gzip
import posixpath
import re
import zlib

from apt_ostree.ostree import Gio, GLib, OSTree
from apt_ostree.system.db import compare_versions

DOC = "usr/share/doc"
# binNMUs ship changelog.Debian.ARCH.gz, native packages changelog.gz.
NAMES = ("changelog.Debian.gz", "changelog.gz")
# "hello (2.10-3) unstable; urgency=medium"
_HEADER = re.compile(r"^(?P<source>[a-z0-9][a-z0-9+.-]*) \((?P<version>[^ ()]+)\) ")
MAX_BYTES = 4 << 20  # a changelog is text; a larger file is not one


def _read(root: Gio.File, path: str, hops: int = 0) -> bytes | None:
    """The file at `path` in the commit, following symbolic links inside it (a
    package's doc directory may link to another package's)."""
    parts = [p for p in path.split("/") if p]
    current = ""
    for i, part in enumerate(parts):
        candidate = posixpath.join(current, part)
        f = root.resolve_relative_path(candidate)
        try:
            info = f.query_info("standard::type,standard::symlink-target,standard::size",
                                Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None)  # fmt: skip
        except GLib.Error:
            return None
        if info.get_file_type() == Gio.FileType.SYMBOLIC_LINK:
            if hops > 8:
                return None
            target = info.get_symlink_target()
            base = "" if target.startswith("/") else current
            resolved = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
            if resolved.startswith(".."):  # a link out of the tree: stay inside it
                resolved = resolved.lstrip("./")
            return _read(root, posixpath.join(resolved, *parts[i + 1 :]), hops + 1)
        if i == len(parts) - 1:
            if info.get_file_type() != Gio.FileType.REGULAR or info.get_size() > MAX_BYTES:
                return None
            _, data, _ = f.load_contents(None)
            return bytes(data)
        current = candidate
    return None


def _entries_since(text: str, since: str) -> str:
    """The changelog's entries newer than version `since` (they come newest first)."""
    kept: list[str] = []
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m and compare_versions(m["version"], since) <= 0:
            break
        kept.append(line)
    return "\n".join(kept).strip("\n")


def changelog_since(repo: OSTree.Repo, checksum: str, name: str, since: str) -> str | None:
    """The entries of package `name`'s changelog in commit `checksum` newer than
    `since`; None when the commit holds no changelog for it (e.g. documentation
    left out of the tree)."""
    _, root, _ = repo.read_commit(checksum, None)
    for filename in NAMES:
        data = _read(root, f"{DOC}/{name}/{filename}")
        if data is None:
            continue
        try:
            text = gzip.decompress(data[:MAX_BYTES]).decode("utf-8", errors="replace")
        except (OSError, EOFError, zlib.error):
            return None
        return _entries_since(text, since)
    return None
