"""`apt-ostree initramfs`: an initramfs built on the machine (docs/initramfs.md).

With `--enable` the origin records `regenerate-initramfs=true` and the dracut
arguments (`initramfs-args`). Every deployment of that origin (this one, and
every later upgrade, rebase, deploy or package change, since all of them go
through `system.sysroot.deploy`) is then made from one more commit: the
deployment's own commit (base or layered) plus the initramfs that dracut built
from that very tree, inside the sandbox, with the recorded arguments. Only the
new `initramfs.img` files are committed; the commit's metadata names the commit
it was built on, so that `--disable` (and any change of the arguments) starts
again from that commit and the base initramfs comes back.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.system.origin import Origin
from apt_ostree.treefs import Tree, TreeError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter
    from apt_ostree.system.sysroot import Sysroot

BASE_KEY = "apt-ostree.base-checksum"
# On a commit with a regenerated initramfs: the commit it was built on, and the
# dracut arguments it was built with.
BUILT_ON_KEY = "apt-ostree.initramfs-built-on"
ARGS_KEY = "apt-ostree.initramfs-args"
MODULES = "usr/lib/modules"


class InitramfsError(AptOstreeError):
    pass


def check_args(args: list[str]) -> None:
    """Arguments the origin can record (a `;`-separated list) and dracut can take."""
    for arg in args:
        if not arg or ";" in arg or "\n" in arg:
            raise InitramfsError(f'invalid --arg "{arg}": empty, or with ";" or a newline')


def tree_commit(repo: OSTree.Repo, checksum: str) -> str:
    """The commit `checksum` was made from when it only adds a regenerated initramfs."""
    meta = ostree_repo.read_commit(repo, checksum).metadata
    return str(meta.get(BUILT_ON_KEY) or checksum)


def commit_for(sysroot: Sysroot, checksum: str, origin: Origin) -> str:
    """The commit a deployment of `checksum` with `origin` is made from: `checksum`
    itself, or (with `regenerate-initramfs`) the commit with the initramfs rebuilt
    with the origin's arguments; an existing one is reused."""
    meta = ostree_repo.read_commit(sysroot.repo, checksum).metadata
    built_on = str(meta.get(BUILT_ON_KEY) or checksum)
    if not origin.regenerate_initramfs:
        return built_on
    if built_on != checksum and list(meta.get(ARGS_KEY, [])) == origin.initramfs_args:
        return checksum
    return regenerate(sysroot, built_on, origin.initramfs_args)


KEEP_REFS = "apt-ostree/keep"


def keep_commits(sysroot: Sysroot, new: str) -> None:
    """Refs on the commits that deployments are built on (the tree under a
    regenerated initramfs, the base under a layer), so that pruning keeps them for
    `initramfs --disable`, `uninstall`, ... as rpm-ostree's `rpmostree/base/N`.
    `new` is the commit about to be deployed; refs no deployment needs go."""
    wanted: list[str] = []
    for checksum in [new, *(d.checksum for d in sysroot.deployments())]:
        meta = ostree_repo.read_commit(sysroot.repo, checksum).metadata
        for key in (BUILT_ON_KEY, BASE_KEY):
            kept = meta.get(key)
            if kept and kept != checksum and kept not in wanted:
                wanted.append(str(kept))
    _, refs = sysroot.repo.list_refs(KEEP_REFS, None)
    current = {f"{KEEP_REFS}/{name}": value for name, value in refs.items()}
    target = {f"{KEEP_REFS}/{i}": checksum for i, checksum in enumerate(wanted)}
    if current == target:
        return
    sysroot.repo.prepare_transaction(None)
    try:
        for ref in current.keys() - target.keys():
            sysroot.repo.transaction_set_ref(None, ref, None)
        for ref, checksum in target.items():
            sysroot.repo.transaction_set_ref(None, ref, checksum)
        sysroot.repo.commit_transaction(None)
    except BaseException:
        sysroot.repo.abort_transaction(None)
        raise


def _kernels(tree: Tree) -> list[str]:
    return [
        kver for kver in tree.listdir(MODULES) if tree.stat(f"{MODULES}/{kver}/vmlinuz") is not None
    ]


def regenerate(sysroot: Sysroot, parent: str, args: list[str]) -> str:
    """A new commit: `parent` with the initramfs of each of its kernels built by
    dracut (in the sandbox, from `parent`'s own tree) with `args`."""
    from apt_ostree.layout import build_initramfs
    from apt_ostree.system.layering import base_tree, overlay

    check_args(args)
    tmp = sysroot.path / "ostree/repo/tmp"
    work = Path(tempfile.mkdtemp(prefix="apt-ostree-initramfs-", dir=tmp))
    try:
        files = work / "files"
        with base_tree(sysroot, parent) as lower, overlay(lower, work) as merged:
            with Tree(merged) as tree:
                kernels = _kernels(tree)
                if not kernels:
                    raise InitramfsError(f"commit {parent[:12]} has no kernel in /{MODULES}")
                for kver in kernels:
                    if tree.is_link(f"{MODULES}/{kver}/initramfs.img"):
                        raise InitramfsError(f"/{MODULES}/{kver}/initramfs.img is a symbolic link")
            for kver in kernels:
                build_initramfs(merged, kver, args)
            # Only the initramfs files are kept: dracut ran in the sandbox, so they
            # are read inside the tree, never through a link.
            with Tree(merged) as tree:
                for kver in kernels:
                    dest = files / MODULES / kver / "initramfs.img"
                    dest.parent.mkdir(parents=True)
                    src = tree.open_file(f"{MODULES}/{kver}/initramfs.img")
                    with src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out)
                    dest.chmod(0o644)
        metadata = ostree_repo.read_commit_metadata_variants(sysroot.repo, parent)
        base = metadata.get(BASE_KEY)
        metadata.update({
            BASE_KEY: base.get_string() if base is not None else parent,
            BUILT_ON_KEY: parent,
            ARGS_KEY: GLib.Variant("as", args),
            "apt-ostree.clientlayer": True,
        })  # fmt: skip
        return ostree_repo.commit_layer(
            sysroot.repo, parent, files, [],
            subject=f"apt-ostree initramfs on {parent[:12]}: dracut {' '.join(args)}".rstrip(),
            metadata=metadata,
        )  # fmt: skip
    except TreeError as e:
        raise InitramfsError(f"cannot regenerate the initramfs: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class InitramfsOutcome:
    changed: bool
    origin: Origin
    checksum: str | None = None


def set_initramfs_state(
    sysroot: Sysroot, osname: str, regenerate_: bool, args: list[str], reporter: Reporter
) -> InitramfsOutcome:
    """`initramfs --enable [--arg ...]` / `--disable`: a new deployment of the current
    one's tree with the initramfs regenerated (or the tree's own). Needs the lock."""
    from apt_ostree.system.packages import default_deployment
    from apt_ostree.system.sysroot import deploy

    if args and not regenerate_:
        raise InitramfsError("--arg needs --enable")
    check_args(args)
    current = default_deployment(sysroot, osname)
    origin = Origin.from_dict(current.origin)
    if not regenerate_ and not origin.regenerate_initramfs:
        raise InitramfsError("initramfs regeneration is not enabled")
    new = dataclasses.replace(
        origin, regenerate_initramfs=regenerate_, initramfs_args=list(args) if regenerate_ else []
    )
    if new.to_dict() == origin.to_dict():
        return InitramfsOutcome(False, origin)
    reporter.task_begin("Regenerating the initramfs" if regenerate_ else "Deploying")
    deploy(sysroot, osname, current.checksum, new, kargs=current.kargs)
    reporter.task_end()
    return InitramfsOutcome(True, new, sysroot.deployments()[0].checksum)
