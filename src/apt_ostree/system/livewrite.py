"""The writing half of `apply-live` (system/livefs.py), run as
`unshare --mount --propagation private -- python3 -m apt_ostree.system.livewrite`.

In this process's own mount namespace /usr (libostree's transient overlay,
read-only everywhere else) is remounted writable; the plan on stdin names what to
copy from the target tree and what to remove, under /usr and under /etc. Every
path is resolved inside its tree (apt_ostree.treefs): the target tree is a
package's content. Files are replaced by rename, so a running program keeps its
old file. The namespace, and the writable mount with it, ends with the process.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

from apt_ostree.treefs import Tree, TreeError

MS_REMOUNT = 32
MS_SILENT = 32768


def remount_writable(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(None, path.encode(), None, MS_REMOUNT | MS_SILENT, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot remount {path} writable: {os.strerror(err)}")


def put(source: Tree, dest: Tree, rel: str) -> None:
    """Make dest's `rel` what source's is; a directory is merged into one that exists."""
    if source.is_dir(rel) and not source.is_link(rel):
        if dest.is_dir(rel) and not dest.is_link(rel):
            for name in source.listdir(rel, strict=True):
                put(source, dest, f"{rel}/{name}")
            return
        if dest.lstat(rel) is not None:
            dest.remove(rel)
        dest.copy_from(source, rel, rel)
        return
    if dest.is_dir(rel) and not dest.is_link(rel):
        dest.remove(rel)
    parent = os.path.dirname(rel)
    if parent:
        dest.makedirs(parent)
    dest.copy_from(source, rel, rel, replace=dest.lstat(rel) is not None)


def apply(plan: dict[str, dict[str, list[str]]], source_root: Path, root: Path) -> None:
    """Apply the plan to `root`'s /usr and /etc (`/` when run by apply-live)."""
    for part, src, dst in (("usr", source_root / "usr", root / "usr"),
                           ("etc", source_root / "usr/etc", root / "etc")):  # fmt: skip
        if not (plan[part]["put"] or plan[part]["remove"]):
            continue
        with Tree(src) as source, Tree(dst) as dest:
            for rel in plan[part]["put"]:
                put(source, dest, rel)
            for rel in plan[part]["remove"]:
                if dest.lstat(rel) is not None:
                    dest.remove(rel)


def main() -> int:
    plan = json.load(sys.stdin)
    usr = {k: [p.removeprefix("usr/") for p in v] for k, v in plan["usr"].items()}
    try:
        remount_writable("/usr")
        apply({"usr": usr, "etc": plan["etc"]}, Path(plan["source"]), Path("/"))
    except (OSError, TreeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
