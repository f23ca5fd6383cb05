"""`apply-live` and `install -A`: the pending deployment's changes on the running system.

As rpm-ostree's: the booted deployment's /usr gets libostree's transient overlay
(`ostree admin unlock --transient`: read-only for everyone, gone at the next
boot); apt-ostree writes the difference between what the machine runs (the booted
commit, or the commit applied live before) and the target commit into it, from a
private mount namespace where the overlay is remounted writable
(system/livewrite.py). New and changed files of /usr/etc reach /etc only where the
machine has not changed the file. Without `allow_replacement` only package
additions are applied; `reset` goes back to the booted commit. The state is
system/livestate.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.cancel import point_of_no_return
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import Reporter
from apt_ostree.system.db import (
    DbError,
    PackageDiff,
    diff_commits,
    diff_to_json,
    resolve_revision,
)
from apt_ostree.system.livestate import LiveState, live_state, write_state
from apt_ostree.system.sysroot import Sysroot
from apt_ostree.treefs import Tree

USR_ETC = "usr/etc/"


class LiveError(AptOstreeError):
    pass


# -- what differs between two commits ---------------------------------------------------


@dataclass
class TreeDiff:
    """Paths relative to the commit's root (`usr/bin/x`): an added or removed
    directory is one entry, with everything in it."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def _dirtree(
    repo: OSTree.Repo, checksum: str
) -> tuple[dict[str, bytes], dict[str, tuple[bytes, bytes]]]:
    """(files: name -> content checksum, dirs: name -> (tree, meta) checksums) of a
    dirtree. Read entry by entry: GLib.Variant.unpack() is ten times slower."""
    _, v = repo.load_variant(OSTree.ObjectType.DIR_TREE, checksum)
    files: dict[str, bytes] = {}
    dirs: dict[str, tuple[bytes, bytes]] = {}
    entries = v.get_child_value(0)
    for i in range(entries.n_children()):
        e = entries.get_child_value(i)
        files[e.get_child_value(0).get_string()] = _raw(e.get_child_value(1))
    entries = v.get_child_value(1)
    for i in range(entries.n_children()):
        e = entries.get_child_value(i)
        tree, meta = (_raw(e.get_child_value(k)) for k in (1, 2))
        dirs[e.get_child_value(0).get_string()] = (tree, meta)
    return files, dirs


def _raw(v: GLib.Variant) -> bytes:
    return bytes(v.get_data_as_bytes().get_data())


def _root(repo: OSTree.Repo, checksum: str) -> str:
    """The root dirtree checksum of a commit."""
    _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, checksum)
    return _raw(commit.get_child_value(6)).hex()


def diff_trees(repo: OSTree.Repo, old: str, new: str, subdir: str = "usr") -> TreeDiff:
    """What changed under `subdir` from commit `old` to commit `new`; only directories
    whose contents differ are read (their dirtree checksums say so)."""
    diff = TreeDiff()
    try:
        _, a_dirs = _dirtree(repo, _root(repo, old))
        _, b_dirs = _dirtree(repo, _root(repo, new))
    except GLib.Error as e:
        raise LiveError(f"cannot read the commits: {e.message}") from e
    if subdir not in a_dirs or subdir not in b_dirs:
        raise LiveError(f"a commit without /{subdir}")
    _diff_dir(repo, subdir, a_dirs[subdir], b_dirs[subdir], diff)
    return diff


def _diff_dir(repo: OSTree.Repo, path: str, a: tuple[bytes, bytes], b: tuple[bytes, bytes],
              diff: TreeDiff) -> None:  # fmt: skip
    if a[0] == b[0]:
        return  # the same contents (a directory's own mode change is not applied)
    a_files, a_dirs = _dirtree(repo, a[0].hex())
    b_files, b_dirs = _dirtree(repo, b[0].hex())
    for name in sorted(a_files.keys() | a_dirs.keys() | b_files.keys() | b_dirs.keys()):
        child = f"{path}/{name}"
        if name in a_dirs and name in b_dirs:
            _diff_dir(repo, child, a_dirs[name], b_dirs[name], diff)
        elif name in a_files and name in b_files:
            if a_files[name] != b_files[name]:
                diff.changed.append(child)
        elif name in b_files or name in b_dirs:
            if name in a_files or name in a_dirs:  # a file became a directory, or back
                diff.changed.append(child)
            else:
                diff.added.append(child)
        else:
            diff.removed.append(child)


# -- /etc: only where the machine kept the default ---------------------------------------


def _same(usr_etc: Tree, etc: Tree, rel: str) -> bool:
    """Is /etc/rel what /usr/etc/rel (the running default) is: absent in both, the
    same link, or a file with the same bytes? Directories count as changed."""
    a, b = usr_etc.lstat(rel), etc.lstat(rel)
    if a is None or b is None:
        return a is None and b is None
    if (a.st_mode ^ b.st_mode) & 0o170000:
        return False
    if usr_etc.is_link(rel):
        return usr_etc.readlink(rel) == etc.readlink(rel)
    if etc.is_dir(rel):
        return False
    return usr_etc.read_bytes(rel) == etc.read_bytes(rel) and a.st_mode == b.st_mode


@dataclass
class EtcPlan:
    put: list[str] = field(default_factory=list)  # relative to /etc
    remove: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # changed by the machine: left alone


def plan_etc(diff: TreeDiff, usr_etc: Tree, etc: Tree) -> EtcPlan:
    plan = EtcPlan()
    for paths, removing in ((diff.added + diff.changed, False), (diff.removed, True)):
        for path in paths:
            if not path.startswith(USR_ETC):
                continue
            rel = path.removeprefix(USR_ETC)
            if not _same(usr_etc, etc, rel):
                plan.kept.append(rel)
            elif removing:
                if not usr_etc.is_dir(rel):
                    plan.remove.append(rel)
            else:
                plan.put.append(rel)
    return plan


# -- the transaction -------------------------------------------------------------------


def check_additions_only(packages: PackageDiff) -> None:
    """Without --allow-replacement, apply-live adds packages and changes none."""
    replaced = packages.removed + [a for a, _ in packages.upgraded + packages.downgraded]
    if replaced:
        names = ", ".join(sorted({p.name for p in replaced})[:5])
        raise LiveError(
            f"apply-live would remove or replace packages ({names}); only additions are"
            " applied unless --allow-replacement is given"
        )


def _target(sysroot: Sysroot, osname: str, target: str | None) -> str:
    if target is not None:
        try:
            return resolve_revision(sysroot.repo, target).checksum
        except DbError as e:
            raise LiveError(str(e)) from e
    pending, _ = sysroot.ostree.query_deployments_for(osname)
    if pending is None:
        raise LiveError("No target commit specified and no pending deployment")
    return str(pending.get_csum())


def _checkout_of(sysroot: Sysroot, checksum: str, scratch: Path) -> Path:
    """A directory holding the commit: a deployment of it, else a hardlink checkout."""
    for d in sysroot.ostree.get_deployments():
        if d.get_csum() == checksum:
            return Path(sysroot.ostree.get_deployment_directory(d).get_path())
    dest = scratch / "tree"
    ostree_repo.checkout_hardlinked(sysroot.repo, checksum, dest)
    return dest


def _writer(plan: dict[str, Any]) -> None:
    """Run system/livewrite.py in a private mount namespace: the only place where the
    transient overlay on /usr is writable."""
    cmd = ["unshare", "--mount", "--propagation", "private", "--",
           sys.executable, "-m", "apt_ostree.system.livewrite"]  # fmt: skip
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, input=json.dumps(plan), text=True, capture_output=True,
                          env=env, check=False)  # fmt: skip
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit {proc.returncode}"
        raise LiveError(f"cannot write the live changes: {why}")


def _after(reporter: Reporter) -> None:
    """What a boot would do with the new files: accounts, tmpfiles, units."""
    for cmd in (
        ["systemd-sysusers"],
        ["systemd-tmpfiles", "--create", "--prefix=/var", "--prefix=/run"],
        ["systemctl", "daemon-reload"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:  # the files are in place; a boot runs these again
            reporter.message(f"warning: {' '.join(cmd)} failed: {proc.stderr.strip()}")


def apply_live(
    sysroot: Sysroot,
    osname: str,
    *,
    target: str | None = None,
    reset: bool = False,
    allow_replacement: bool = False,
    reporter: Reporter,
) -> dict[str, Any]:
    """Apply `target` (default: the pending deployment; `reset`: the booted commit) to
    the running system. Returns what was done, as plain data."""
    if not sysroot.booted:
        raise LiveError("apply-live needs the booted system: an offline sysroot runs nothing")
    booted = sysroot.ostree.get_booted_deployment()
    if booted is None:
        raise LiveError("Not booted into an OSTree deployment")
    booted_commit = str(booted.get_csum())
    # (--reset with --target is refused with the request: operations._apply_live)
    target_commit = booted_commit if reset else _target(sysroot, osname, target)
    repo = sysroot.repo
    state = live_state(repo, booted_commit, booted.get_deployserial())
    unlocked = booted.get_unlocked()
    if unlocked == OSTree.DeploymentUnlockedState.HOTFIX:
        raise LiveError("apply-live cannot work on a deployment unlocked with --hotfix")
    if state is not None and state.inprogress and state.inprogress != target_commit:
        raise LiveError(
            f"an earlier apply-live of {state.inprogress} was interrupted; finish it first"
            f" (apt-ostree apply-live --target={state.inprogress})"
        )
    source = (state.commit if state else None) or booted_commit
    result: dict[str, Any] = {"changed": False, "source": source, "target": target_commit}
    if source == target_commit and not (state and state.inprogress):
        return result
    try:
        packages = diff_commits(repo, source, target_commit)
    except DbError:
        packages = None
    if packages is not None:
        result["packages"] = diff_to_json(packages)
        if not (allow_replacement or reset):
            check_additions_only(packages)
    reporter.task_begin("Computing the /usr difference")
    diff = diff_trees(repo, source, target_commit)
    counts = (len(diff.added), len(diff.changed), len(diff.removed))
    reporter.task_end("{} added, {} changed, {} removed".format(*counts))
    with Tree(Path("/usr/etc")) as usr_etc, Tree(Path("/etc")) as etc:
        etc_plan = plan_etc(diff, usr_etc, etc)

    point_of_no_return()  # an interrupted apply is finished by the next one, never undone
    if unlocked == OSTree.DeploymentUnlockedState.NONE:
        try:
            sysroot.ostree.deployment_unlock(booted, OSTree.DeploymentUnlockedState.TRANSIENT, None)
        except GLib.Error as e:
            raise LiveError(f"cannot unlock /usr: {e.message}") from e
    write_state(repo, booted, LiveState(state.commit if state else None, target_commit))
    tmp = sysroot.path / "ostree/repo/tmp"
    scratch = Path(tempfile.mkdtemp(prefix="apt-ostree-live-", dir=tmp))
    try:
        reporter.task_begin("Applying the changes to the running system")
        plan = {
            "source": os.fspath(_checkout_of(sysroot, target_commit, scratch)),
            "usr": {"put": diff.added + diff.changed, "remove": diff.removed},
            "etc": {"put": etc_plan.put, "remove": etc_plan.remove},
        }
        _writer(plan)
        reporter.task_end()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    done = None if target_commit == booted_commit else target_commit
    write_state(repo, booted, LiveState(done, None))
    _after(reporter)
    result.update(
        changed=True,
        added=len(diff.added), modified=len(diff.changed), removed=len(diff.removed),
        etc={"updated": etc_plan.put, "removed": etc_plan.remove, "kept": etc_plan.kept},
    )  # fmt: skip
    return result
