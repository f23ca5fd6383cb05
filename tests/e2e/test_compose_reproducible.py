"""The same treefile composed in another directory gives the same tree (slow).

The first compose is the Debian base of the test cache (tests/fixtures/debianbase.py:
composed by whichever run came first, in its own directory, with its repository's
previous commit as the source of user ids); the second composes the same treefile
from another directory into a new repository. Both resolve against the same sources
within minutes, so their package sets are the same, and so must their content be.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apt_ostree.compose.tree import INPUTS_KEY, RESOLVED_KEY
from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.debianbase import CACHEDIR, COMPOSED_REF, TREEFILE, DebianBase
from tests.fixtures.sysroot import apt_ostree

pytestmark = pytest.mark.slow


def content_checksum(repo: Path, rev: str) -> str:
    out = subprocess.run(["ostree", f"--repo={repo}", "show", rev], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return next(line.split()[1] for line in out.splitlines() if line.startswith("ContentChecksum"))


def ostree_diff(repo: Path, base: DebianBase, checksum: str) -> str:
    ostree = ["ostree", f"--repo={repo}"]
    subprocess.run([*ostree, "pull-local", str(base.repo), base.composed_checksum], check=True,
                   capture_output=True)  # fmt: skip
    return subprocess.run([*ostree, "diff", base.composed_checksum, checksum],
                          capture_output=True, text=True).stdout  # fmt: skip


def test_same_treefile_in_another_directory_gives_the_same_content_checksum(
    debian_base: DebianBase, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "another" / "checkout"
    elsewhere.mkdir(parents=True)
    treefile = elsewhere / "debian-base.yaml"
    treefile.write_text(TREEFILE)
    repo, stamp = tmp_path / "repo", tmp_path / "changed.stamp"
    proc = apt_ostree(None, "compose", "tree", treefile, "--repo", repo, "--cachedir", CACHEDIR,
                      "--touch-if-changed", stamp)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stamp.is_file()

    first = ostree_repo.read_commit(
        ostree_repo.open_repo(debian_base.repo), debian_base.composed_checksum
    ).metadata
    second_checksum = ostree_repo.resolve_ref(ostree_repo.open_repo(repo), COMPOSED_REF)
    assert second_checksum is not None
    second = ostree_repo.read_commit(ostree_repo.open_repo(repo), second_checksum).metadata
    assert second[INPUTS_KEY] == first[INPUTS_KEY]
    assert second[RESOLVED_KEY] == first[RESOLVED_KEY], "the archive changed between composes"
    if content_checksum(repo, second_checksum) != content_checksum(
        debian_base.repo, debian_base.composed_checksum
    ):
        pytest.fail("the trees differ:\n" + ostree_diff(repo, debian_base, second_checksum))

    # Nothing changed: no commit, and the stamp is left alone.
    stamp.unlink()
    proc = apt_ostree(None, "compose", "tree", treefile, "--repo", repo, "--cachedir", CACHEDIR,
                      "--touch-if-changed", stamp)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "No apparent changes" in proc.stdout
    assert not stamp.exists()
