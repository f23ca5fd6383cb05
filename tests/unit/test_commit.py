"""Committing a postprocessed tree: metadata, versions, parents, bad repos and refs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from apt_ostree.compose.commit import CommitRequest, commit_tree, next_version
from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.errors import RepoError
from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.trees import make_tree

KVER = "6.1.0-fake"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "root", kernel=KVER)
    postprocess_tree(root, PostprocessOptions())
    return root


def commit(rootfs: Path, repo: Path, **kw: object) -> str:
    request = CommitRequest(repo=repo, ref="test/x86_64/base", rootfs=rootfs, **kw)  # type: ignore[arg-type]
    return commit_tree(request).checksum


def metadata(repo: Path, checksum: str) -> dict[str, object]:
    return ostree_repo.read_commit(ostree_repo.open_repo(repo), checksum).metadata


def test_commit_creates_an_archive_repo_and_sets_the_ref(rootfs: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    csum = commit(rootfs, repo)
    assert "mode=archive" in (repo / "config").read_text()
    out = subprocess.run(["ostree", f"--repo={repo}", "rev-parse", "test/x86_64/base"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == csum
    subprocess.run(["ostree", f"--repo={repo}", "fsck", "-q"], check=True)
    assert (repo / "summary").is_file()


def test_commit_metadata_names_kernel_and_every_installed_package(
    rootfs: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    meta = metadata(repo, commit(rootfs, repo))
    assert meta["ostree.bootable"] is True
    assert meta["ostree.linux"] == KVER
    assert meta["apt-ostree.packages"] == [
        ("base-files", "12.4+deb12u5", "amd64"),
        ("dash", "0.5.12-2", "amd64"),
    ]


def test_commit_keeps_ownership_and_modes(rootfs: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    spool = rootfs / "usr/share/mailspool"
    spool.mkdir(mode=0o2775)
    spool.chmod(0o2775)
    os.chown(spool, 0, 8)
    csum = commit(rootfs, repo)
    out = subprocess.run(["ostree", f"--repo={repo}", "ls", "-d", csum, "/usr/share/mailspool"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.split()[:3] == ["d02775", "0", "8"]


def test_second_commit_has_the_first_as_parent_and_next_version(
    rootfs: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = commit(rootfs, repo, automatic_version_prefix="12")
    (rootfs / "usr/etc/new-file").write_text("x")
    second = commit(rootfs, repo, automatic_version_prefix="12")
    info = ostree_repo.read_commit(ostree_repo.open_repo(repo), second)
    assert info.parent == first
    assert metadata(repo, first)["version"] == "12"
    assert info.metadata["version"] == "12.1"


def test_bare_user_repo_is_accepted(rootfs: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=bare-user"], check=True)
    commit(rootfs, repo)
    subprocess.run(["ostree", f"--repo={repo}", "fsck", "-q"], check=True)


def test_a_directory_that_is_not_a_repo_is_refused_and_left_alone(
    rootfs: Path, tmp_path: Path
) -> None:
    notrepo = tmp_path / "notrepo"
    notrepo.mkdir()
    (notrepo / "data.txt").write_text("mine")
    with pytest.raises(RepoError, match="not an OSTree repository"):
        commit(rootfs, notrepo)
    assert [p.name for p in notrepo.iterdir()] == ["data.txt"]


def test_invalid_ref_is_refused_before_anything_is_written(rootfs: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(RepoError, match="invalid ref"):
        commit_tree(CommitRequest(repo=repo, ref="bad ref!", rootfs=rootfs))
    assert not repo.exists()


@pytest.mark.parametrize(
    ("prefix", "previous", "expected"),
    [
        ("12", None, "12"),
        ("12", "12", "12.1"),
        ("12", "12.7", "12.8"),
        ("12", "11.3", "12"),
        ("12", "120", "12"),
        ("12.<date:%Y>", "12.1970.2", "12.1970.3"),
    ],
)
def test_next_version_follows_rpm_ostree(prefix: str, previous: str | None, expected: str) -> None:
    assert next_version(prefix, previous, now=0) == expected
