"""`apply-live` off a booted system: the /usr difference of two commits (read from
their dirtrees), which /etc files may change, and the writer applied to a copy of
the old tree, which must come out as the new one. The overlay on a booted /usr
(its private mount namespace) is checked in the VM (tests/e2e/test_boot.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.system.db import Package, diff_packages
from apt_ostree.system.livefs import (
    LiveError,
    TreeDiff,
    check_additions_only,
    diff_trees,
    plan_etc,
)
from apt_ostree.system.livewrite import apply
from apt_ostree.treefs import Tree
from tests.fixtures.sysroot import apt_ostree

OLD = {
    "usr/bin/tool": "old tool\n",
    "usr/bin/same": "same\n",
    "usr/share/gone/a": "a\n",
    "usr/share/keep/file": "keep\n",
    "usr/etc/kept.conf": "default\n",
    "usr/etc/edited.conf": "default\n",
    "usr/etc/dropped.conf": "x\n",
}
NEW = {
    "usr/bin/tool": "new tool\n",
    "usr/bin/same": "same\n",
    "usr/bin/added": "added\n",
    "usr/share/keep/file": "keep\n",
    "usr/share/newdir/sub/f": "f\n",
    "usr/etc/kept.conf": "new default\n",
    "usr/etc/edited.conf": "new default\n",
    "usr/etc/fresh.conf": "fresh\n",
    "usr/etc/newdir/x.conf": "x\n",
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def commit(repo: Path, root: Path) -> str:
    proc = subprocess.run(
        ["ostree", f"--repo={repo}", "commit", "--branch=test", f"--tree=dir={root}",
         "--owner-uid=0", "--owner-gid=0", "--no-xattrs"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return proc.stdout.strip()


def files_of(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def commits(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "repo"
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=bare-user"], check=True)
    old = commit(repo, write_tree(tmp_path / "old", OLD))
    new = commit(repo, write_tree(tmp_path / "new", NEW))
    return repo, old, new


def test_diff_names_added_changed_and_removed_paths_and_whole_new_directories(
    commits: tuple[Path, str, str],
) -> None:
    path, old, new = commits
    repo = ostree_repo.open_repo(path)
    diff = diff_trees(repo, old, new)
    assert diff == TreeDiff(
        added=["usr/bin/added", "usr/etc/fresh.conf", "usr/etc/newdir", "usr/share/newdir"],
        changed=["usr/bin/tool", "usr/etc/edited.conf", "usr/etc/kept.conf"],
        removed=["usr/etc/dropped.conf", "usr/share/gone"],
    )
    back = diff_trees(repo, new, old)
    assert (back.added, back.removed) == (diff.removed, diff.added)
    assert diff_trees(repo, old, old).empty


def test_the_writer_turns_the_old_tree_into_the_new_one_and_keeps_edited_etc_files(
    commits: tuple[Path, str, str], tmp_path: Path
) -> None:
    path, old, new = commits
    repo = ostree_repo.open_repo(path)
    # The running machine: /usr of the old commit, /etc its merge with one edit.
    root = write_tree(tmp_path / "root", OLD)
    etc = {k.removeprefix("usr/"): v for k, v in OLD.items() if k.startswith("usr/etc/")}
    write_tree(root, {**etc, "etc/edited.conf": "the machine's own\n"})
    diff = diff_trees(repo, old, new)
    with Tree(root / "usr/etc") as usr_etc, Tree(root / "etc") as etc_tree:
        plan = plan_etc(diff, usr_etc, etc_tree)
    assert plan.put == ["fresh.conf", "newdir", "kept.conf"]
    assert plan.kept == ["edited.conf"]
    assert plan.remove == ["dropped.conf"]

    usr = {"put": [p.removeprefix("usr/") for p in diff.added + diff.changed],
           "remove": [p.removeprefix("usr/") for p in diff.removed]}  # fmt: skip
    apply({"usr": usr, "etc": {"put": plan.put, "remove": plan.remove}}, tmp_path / "new", root)

    assert files_of(root / "usr") == {k.removeprefix("usr/"): v for k, v in NEW.items()}
    assert files_of(root / "etc") == {
        "kept.conf": "new default\n",
        "edited.conf": "the machine's own\n",
        "fresh.conf": "fresh\n",
        "newdir/x.conf": "x\n",
    }


def test_a_link_in_the_new_tree_is_copied_as_a_link_and_never_followed(
    tmp_path: Path,
) -> None:
    source = write_tree(tmp_path / "new", {"usr/bin/x": "x\n"})
    os.symlink("/etc/shadow", source / "usr/bin/evil")
    (source / "usr/share").mkdir()
    os.symlink("/", source / "usr/share/escape")
    root = write_tree(tmp_path / "root", {"usr/bin/x": "old\n", "etc/.keep": ""})
    outside = write_tree(tmp_path / "outside", {"secret": "s\n"})
    os.symlink(outside, root / "usr/lib")
    plan = {"usr": {"put": ["bin/evil", "share/escape"], "remove": []},
            "etc": {"put": [], "remove": []}}  # fmt: skip
    apply(plan, source, root)
    assert os.readlink(root / "usr/bin/evil") == "/etc/shadow"
    assert os.readlink(root / "usr/share/escape") == "/"
    # A link planted in the running tree is not written through either.
    with pytest.raises(Exception, match="symbolic link"):
        apply({"usr": {"put": ["lib/secret"], "remove": []}, "etc": {"put": [], "remove": []}},
              write_tree(tmp_path / "n2", {"usr/lib/secret": "mine\n"}), root)  # fmt: skip
    assert (outside / "secret").read_text() == "s\n"


def test_apply_live_on_an_offline_sysroot_is_refused_before_any_work(sysroot: object) -> None:
    path = sysroot.path  # type: ignore[attr-defined]
    before = apt_ostree(path, "status", "--json").stdout
    proc = apt_ostree(path, "apply-live")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: apply-live needs the booted system: an offline sysroot runs nothing"
    )
    proc = apt_ostree(path, "install", "-A", "pkg-c")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --apply-live needs the booted system: an offline sysroot runs nothing"
    )
    assert apt_ostree(path, "status", "--json").stdout == before


def test_only_package_additions_are_applied_unless_replacement_is_allowed() -> None:
    old = [Package("a", "1", "amd64"), Package("b", "1", "amd64")]
    check_additions_only(diff_packages(old, [*old, Package("c", "1", "all")]))
    for new in (
        [Package("a", "2", "amd64"), Package("b", "1", "amd64")],  # upgraded
        [Package("a", "0.9", "amd64"), Package("b", "1", "amd64")],  # downgraded
        [Package("b", "1", "amd64")],  # removed
    ):
        with pytest.raises(LiveError, match=r"would remove or replace packages \(a\)"):
            check_additions_only(diff_packages(old, new))
