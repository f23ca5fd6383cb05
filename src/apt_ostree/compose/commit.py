"""Commit a postprocessed tree into a repository, with apt-ostree's metadata."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.debian.dpkgdb import installed_packages
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.errors import AptOstreeError, RepoError
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.signing import GpgSigner, binding_metadata, check_signer, regenerate_summary
from apt_ostree.treefs import Tree

PACKAGES_KEY = "apt-ostree.packages"


@dataclass
class CommitRequest:
    repo: Path
    ref: str
    rootfs: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    automatic_version_prefix: str | None = None
    subject: str | None = None
    create_mode: str = "archive"
    signer: GpgSigner | None = None  # signs the commit and the summary


def next_version(prefix: str, previous: str | None, now: float | None = None) -> str:
    """rpm-ostree's automatic versioning: PREFIX, then PREFIX.1, PREFIX.2, ...

    `<date:FORMAT>` in the prefix is expanded with strftime.
    """
    stamp = time.gmtime(now if now is not None else time.time())
    prefix = re.sub(r"<date:([^>]*)>", lambda m: time.strftime(m.group(1), stamp), prefix)
    if previous is None or not (previous == prefix or previous.startswith(prefix + ".")):
        return prefix
    if previous == prefix:
        return f"{prefix}.1"
    rest = previous[len(prefix) + 1 :]
    counter = rest.split(".", 1)[0]
    if not counter.isdigit():
        return f"{prefix}.1"
    return f"{prefix}.{int(counter) + 1}"


def packages_variant(packages: Sequence[PackageInfo]) -> Any:
    from apt_ostree.ostree import GLib

    return GLib.Variant("a(sss)", [(p.name, p.version, p.arch) for p in packages])


def tree_metadata(rootfs: Path) -> dict[str, Any]:
    """Metadata that the tree itself determines: bootability, kernel, packages."""
    with Tree(rootfs) as tree:
        modules = "usr/lib/modules"
        kvers = [k for k in tree.listdir(modules) if tree.stat(f"{modules}/{k}/vmlinuz")]
    meta: dict[str, Any] = {
        "ostree.bootable": bool(kvers),
        PACKAGES_KEY: packages_variant(installed_packages(rootfs)),
    }
    if kvers:
        meta["ostree.linux"] = kvers[-1]
    return meta


@dataclass
class CommitResult:
    checksum: str
    version: str | None
    parent: str | None


def commit_tree(req: CommitRequest) -> CommitResult:
    """Write `req.rootfs` to `req.repo` on `req.ref`; the parent is the ref's current commit."""
    if not (req.rootfs / "usr").is_dir():
        raise AptOstreeError(f"{req.rootfs} is not a tree (no /usr)")
    reason = ostree_repo.validate_ref(req.ref)
    if reason is not None:
        raise RepoError(f'invalid ref "{req.ref}": {reason}')
    ostree_repo.check_repo_path(req.repo)
    if req.signer is not None:
        check_signer(req.signer)
    repo = ostree_repo.open_repo(req.repo, create_mode=req.create_mode)
    parent = ostree_repo.resolve_ref(repo, req.ref)
    metadata = tree_metadata(req.rootfs)
    metadata.update(req.metadata)
    metadata.update(binding_metadata(repo, req.ref))
    version = req.version
    if version is None and req.automatic_version_prefix:
        prev_version = None
        if parent is not None:
            prev_version = ostree_repo.read_commit(repo, parent).metadata.get("version")
        version = next_version(req.automatic_version_prefix, prev_version)
    if version is not None:
        metadata["version"] = version
    subject = req.subject or (f"{req.ref} {version}" if version else req.ref)
    checksum = ostree_repo.commit_directory(
        repo, req.rootfs, ref=req.ref, parent=parent, subject=subject, metadata=metadata,
        signer=req.signer,
    )  # fmt: skip
    regenerate_summary(repo, req.signer)
    return CommitResult(checksum, version, parent)
