"""OSTree repositories: open or create, commit a directory, read commit metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.errors import RepoError
from apt_ostree.ostree import Gio, GLib, OSTree

if TYPE_CHECKING:
    from apt_ostree.ostree.signing import GpgSigner

REPO_MODES = {
    "archive": OSTree.RepoMode.ARCHIVE,
    "archive-z2": OSTree.RepoMode.ARCHIVE,
    "bare-user": OSTree.RepoMode.BARE_USER,
    "bare": OSTree.RepoMode.BARE,
}


def validate_ref(ref: str) -> str | None:
    """Return None when `ref` is a valid OSTree ref, else the reason."""
    try:
        OSTree.validate_rev(ref)
    except GLib.Error as e:
        return str(e.message)
    return None


def is_repo(path: Path) -> bool:
    return (path / "config").is_file() and (path / "objects").is_dir()


def check_repo_path(path: Path) -> None:
    """Fail early when `path` exists but cannot be (or become) a repo: nothing is written."""
    if not path.exists():
        return
    if not path.is_dir():
        raise RepoError(f"{path} is not an OSTree repository (it is not a directory)")
    if is_repo(path):
        return
    if any(path.iterdir()):
        raise RepoError(f"{path} is not an OSTree repository (no config/objects; not empty)")


def open_repo(path: Path, create_mode: str | None = None) -> OSTree.Repo:
    """Open the repository at `path`; create it in `create_mode` if it does not exist."""
    repo = OSTree.Repo.new(Gio.File.new_for_path(os.fspath(path)))
    if not is_repo(path):
        if create_mode is None:
            raise RepoError(f"{path} is not an OSTree repository")
        check_repo_path(path)
        if create_mode not in REPO_MODES:
            raise RepoError(f"unknown repository mode {create_mode!r}")
        path.mkdir(parents=True, exist_ok=True)
        try:
            repo.create(REPO_MODES[create_mode], None)
        except GLib.Error as e:
            raise RepoError(f"cannot create repository {path}: {e.message}") from e
        return repo
    try:
        repo.open(None)
    except GLib.Error as e:
        raise RepoError(f"cannot open repository {path}: {e.message}") from e
    return repo


def resolve_ref(repo: OSTree.Repo, ref: str) -> str | None:
    """The checksum `ref` points to, or None if the ref does not exist."""
    try:
        ok, csum = repo.resolve_rev(ref, True)
    except GLib.Error as e:
        raise RepoError(f"cannot resolve {ref}: {e.message}") from e
    return csum if ok and csum else None


def commit_exists(repo: OSTree.Repo, checksum: str) -> bool:
    try:
        ok, variant = repo.load_variant_if_exists(OSTree.ObjectType.COMMIT, checksum)
    except GLib.Error:
        return False
    return bool(ok) and variant is not None


@dataclass(frozen=True)
class CommitInfo:
    """What a commit object says: its parent, subject, time and metadata."""

    checksum: str
    parent: str | None
    subject: str
    timestamp: int
    metadata: dict[str, Any]


def read_commit(repo: OSTree.Repo, checksum: str) -> CommitInfo:
    try:
        _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, checksum)
    except GLib.Error as e:
        raise RepoError(f"cannot load commit {checksum}: {e.message}") from e
    metadata = commit.get_child_value(0).unpack()
    parent = OSTree.commit_get_parent(commit)
    subject = commit.get_child_value(3).get_string()
    timestamp = OSTree.commit_get_timestamp(commit)
    return CommitInfo(checksum, parent, subject, timestamp, metadata)


def read_commit_metadata_variants(repo: OSTree.Repo, checksum: str) -> dict[str, GLib.Variant]:
    """The commit's metadata as variants, their types kept (an `a(sss)` list stays
    one), for a new commit that carries it over."""
    try:
        _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, checksum)
    except GLib.Error as e:
        raise RepoError(f"cannot load commit {checksum}: {e.message}") from e
    meta = commit.get_child_value(0)
    out: dict[str, GLib.Variant] = {}
    for i in range(meta.n_children()):
        entry = meta.get_child_value(i)
        out[entry.get_child_value(0).get_string()] = entry.get_child_value(1).get_variant()
    return out


def _variant(value: Any) -> GLib.Variant:
    """Commit metadata values: strings, booleans, integers, string lists, package tuples."""
    if isinstance(value, GLib.Variant):
        return value
    if isinstance(value, bool):
        return GLib.Variant("b", value)
    if isinstance(value, int):
        return GLib.Variant("x", value)
    if isinstance(value, float):
        return GLib.Variant("d", value)
    if isinstance(value, str):
        return GLib.Variant("s", value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return GLib.Variant("as", value)
    raise RepoError(f"unsupported metadata value {value!r}")


def commit_directory(
    repo: OSTree.Repo,
    root: Path,
    *,
    ref: str,
    parent: str | None,
    subject: str,
    metadata: dict[str, Any],
    timestamp: int | None = None,
    signer: GpgSigner | None = None,
) -> str:
    """Commit the directory `root` on `ref` in one transaction; return the checksum.

    Ownership and modes are recorded as they are on disk (the tree is built as root).
    With `signer` the commit is signed before the ref moves. An interrupted or
    failed commit (or signature) leaves the ref untouched.
    """
    meta = GLib.Variant("a{sv}", {k: _variant(v) for k, v in metadata.items()})
    try:
        repo.prepare_transaction(None)
        try:
            mtree = OSTree.MutableTree.new()
            modifier = OSTree.RepoCommitModifier.new(OSTree.RepoCommitModifierFlags.NONE, None)
            repo.write_directory_to_mtree(
                Gio.File.new_for_path(os.fspath(root)), mtree, modifier, None
            )
            _, root_file = repo.write_mtree(mtree, None)
            if timestamp is None:
                _, checksum = repo.write_commit(parent, subject, None, meta, root_file, None)
            else:
                _, checksum = repo.write_commit_with_time(
                    parent, subject, None, meta, root_file, timestamp, None
                )
            if signer is not None:
                from apt_ostree.ostree.signing import sign_commit

                sign_commit(repo, checksum, signer)
            repo.transaction_set_ref(None, ref, checksum)
            repo.commit_transaction(None)
        except BaseException:
            repo.abort_transaction(None)
            raise
    except GLib.Error as e:
        raise RepoError(f"cannot commit {root}: {e.message}") from e
    return str(checksum)


def checkout_hardlinked(repo: OSTree.Repo, checksum: str, dest: Path) -> None:
    """Check `checksum` out at `dest` with hardlinks into the (bare) repo: O(files) links,
    no copies. The checkout must only ever be read (an overlay's lower layer)."""
    options = OSTree.RepoCheckoutAtOptions()
    options.mode = OSTree.RepoCheckoutMode.NONE
    options.overwrite_mode = OSTree.RepoCheckoutOverwriteMode.NONE
    options.no_copy_fallback = True
    try:
        ok = repo.checkout_at(options, -100, os.fspath(dest), checksum, None)  # AT_FDCWD
    except GLib.Error as e:
        raise RepoError(f"cannot check out {checksum}: {e.message}") from e
    if not ok:
        raise RepoError(f"cannot check out {checksum}")


def commit_layer(
    repo: OSTree.Repo,
    base: str,
    upper: Path,
    removals: list[str],
    *,
    subject: str,
    metadata: dict[str, Any],
) -> str:
    """A new commit: the tree of `base`, minus `removals` (paths like "usr/bin/x"),
    plus the content of the directory `upper` merged over it. The base is never
    re-read or re-hashed: only what `upper` holds is written. No ref is set (the
    deployment keeps the commit alive); the parent is `base`."""
    meta = GLib.Variant("a{sv}", {k: _variant(v) for k, v in metadata.items()})
    try:
        repo.prepare_transaction(None)
        try:
            mtree = OSTree.MutableTree.new_from_commit(repo, base)
            for path in removals:
                _mtree_remove(mtree, path)
            modifier = OSTree.RepoCommitModifier.new(OSTree.RepoCommitModifierFlags.NONE, None)
            repo.write_directory_to_mtree(
                Gio.File.new_for_path(os.fspath(upper)), mtree, modifier, None
            )
            _, root_file = repo.write_mtree(mtree, None)
            _, checksum = repo.write_commit(base, subject, None, meta, root_file, None)
            repo.commit_transaction(None)
        except BaseException:
            repo.abort_transaction(None)
            raise
    except GLib.Error as e:
        raise RepoError(f"cannot commit the layer on {base[:12]}: {e.message}") from e
    return str(checksum)


def _mtree_remove(mtree: OSTree.MutableTree, path: str) -> None:
    *parents, name = Path(path).parts
    node = mtree
    for part in parents:
        _, _, sub = node.lookup(part)
        if sub is None:
            return
        node = sub
    node.remove(name, True)


def read_commit_file(repo: OSTree.Repo, checksum: str, path: str) -> bytes | None:
    """The content of the regular file `path` in commit `checksum`; None if absent."""
    _, root, _ = repo.read_commit(checksum, None)
    child = root.resolve_relative_path(path)
    if not child.query_exists(None):
        return None
    info = child.query_info("standard::type", Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None)
    if info.get_file_type() != Gio.FileType.REGULAR:
        return None
    child.ensure_resolved()
    _, stream, info, _ = repo.load_file(child.get_checksum(), None)
    chunks = []
    while chunk := stream.read_bytes(1 << 20, None).get_data():
        chunks.append(chunk)
    return b"".join(chunks)
