"""Composing real Debian trees from the host's configured APT mirror (slow).

The default example (examples/debian-13.yaml, trixie) is composed here, from a
host of any release: the treefile's suite is what the host's mirror serves.
examples/debian-12.yaml (bookworm) is composed and booted by test_boot.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.debian.sources import host_sources
from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.aptrepo import DebSpec, SigningKey, publish_repo
from tests.fixtures.debianbase import fixture_sources
from tests.fixtures.sysroot import apt_ostree as run_cli

pytestmark = pytest.mark.slow

TOP = Path(__file__).resolve().parents[2]
MINIMAL = TOP / "examples/debian-13.yaml"
# Shared across test runs on one machine so that .debs are downloaded once.
CACHEDIR = Path(os.environ.get("APT_OSTREE_TEST_CACHEDIR", "/var/tmp/apt-ostree-test-cache"))


def apt_ostree(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli(None, *args)


def ostree(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["ostree", f"--repo={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


@dataclass
class Composed:
    repo: Path
    ref: str
    checksum: str
    stdout: str


@pytest.fixture(scope="module")
def minimal(tmp_path_factory: pytest.TempPathFactory, apt_ostree_deb: Path) -> Iterator[Composed]:
    # The example composes apt-ostree's own .deb in (apt_ostree_deb builds it).
    repo = tmp_path_factory.mktemp("minimal") / "repo"
    proc = apt_ostree("compose", "tree", MINIMAL, "--repo", repo, "--cachedir", CACHEDIR)
    assert proc.returncode == 0, proc.stderr
    ref = "debian/13/x86_64/minimal"
    yield Composed(repo, ref, ostree(repo, "rev-parse", ref).strip(), proc.stdout)


def ls(c: Composed, *paths: str) -> str:
    return ostree(c.repo, "ls", c.checksum, *paths)


def test_minimal_commit_has_kernel_and_initramfs_in_usr_lib_modules(minimal: Composed) -> None:
    out = ostree(minimal.repo, "ls", "-R", minimal.checksum, "/usr/lib/modules")
    names = {line.split()[-1].rsplit("/", 1)[-1] for line in out.splitlines()}
    assert {"vmlinuz", "initramfs.img"} <= names


def test_minimal_initramfs_contains_ostree_prepare_root(minimal: Composed, tmp_path: Path) -> None:
    kver = ostree(minimal.repo, "show", "--print-metadata-key=ostree.linux", minimal.checksum)
    kver = kver.strip().strip("'")
    img = tmp_path / "initramfs.img"
    with img.open("wb") as f:
        subprocess.run(
            ["ostree", f"--repo={minimal.repo}", "cat", minimal.checksum,
             f"/usr/lib/modules/{kver}/initramfs.img"],
            stdout=f, check=True,
        )  # fmt: skip
    listing = subprocess.run(["lsinitrd", str(img)], capture_output=True, text=True).stdout
    assert "usr/lib/ostree/ostree-prepare-root" in listing


def test_minimal_commit_has_apt_ostree_itself(minimal: Composed) -> None:
    packages = ostree(minimal.repo, "show", "--print-metadata-key=apt-ostree.packages",
                      minimal.checksum)  # fmt: skip
    assert "('apt-ostree', " in packages
    listing = ls(minimal, "/usr/bin/apt-ostree", "/usr/lib/apt-ostree/grub2-generate",
                 "/usr/lib/tmpfiles.d/apt-ostree.conf",
                 "/usr/lib/dracut/dracut.conf.d/50-apt-ostree.conf")  # fmt: skip
    assert len(listing.splitlines()) == 4


def test_minimal_commit_layout(minimal: Composed) -> None:
    top = {line.split()[-1] if "->" not in line else line.split()[-3] for line in
           ls(minimal, "/").splitlines()}  # fmt: skip
    assert "/etc" not in top
    assert {"/usr", "/sysroot", "/ostree", "/var", "/boot"} <= top
    assert ls(minimal, "/var").strip().splitlines() == [ls(minimal, "-d", "/var").strip()]
    assert ls(minimal, "-d", "/usr/etc/os-release")
    assert ls(minimal, "/usr/share/dpkg/database/status")
    assert "../../usr/share/dpkg/database" in ostree(
        minimal.repo, "cat", minimal.checksum, "/usr/lib/tmpfiles.d/apt-ostree-state.conf"
    )


def test_minimal_commit_fsck_is_clean(minimal: Composed) -> None:
    subprocess.run(["ostree", f"--repo={minimal.repo}", "fsck", "-q"], check=True)


def test_minimal_commit_metadata(minimal: Composed) -> None:
    repo = ostree_repo.open_repo(minimal.repo)
    meta = ostree_repo.read_commit(repo, minimal.checksum).metadata
    assert meta["ostree.bootable"] is True
    names = {name for name, _, _ in meta["apt-ostree.packages"]}
    assert {"systemd", "dracut", "ostree-boot", "python3-apt", "base-files"} <= names
    assert len(meta["apt-ostree.treefile-sha256"]) == 64
    assert meta["version"].startswith("13.")
    # The suite the treefile names, from the host's mirror whatever the host runs.
    assert ("base-files", "13") in {(n, v.split(".")[0]) for n, v, _ in meta["apt-ostree.packages"]}
    assert "mode=archive" in (minimal.repo / "config").read_text()


def test_recompose_without_changes_makes_no_commit(minimal: Composed, tmp_path: Path) -> None:
    proc = apt_ostree("compose", "tree", MINIMAL, "--repo", minimal.repo, "--cachedir", CACHEDIR)
    assert proc.returncode == 0, proc.stderr
    assert "No apparent changes since previous commit" in proc.stdout
    assert ostree(minimal.repo, "rev-parse", minimal.ref).strip() == minimal.checksum
    # rpm-ostree's --touch-if-changed: the file is touched only by a new commit
    stamp = tmp_path / "touched-if-changed"
    proc = apt_ostree("compose", "tree", MINIMAL, "--repo", minimal.repo, "--cachedir", CACHEDIR,
                      "--touch-if-changed", stamp)  # fmt: skip
    assert proc.returncode == 0 and not stamp.exists()


def essential_treefile(path: Path, **extra: str) -> Path:
    """The Essential set only (no kernel): the smallest real Debian tree."""
    lines = ["ref: test/x86_64/essential", "suite: bookworm", "recommends: false",
             "documentation: false"] + [f"{k}: {v}" for k, v in extra.items()]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_failing_postprocess_script_stops_the_compose_and_shows_its_output(
    tmp_path: Path,
) -> None:
    tf = essential_treefile(
        tmp_path / "tf.yaml", postprocess='["echo the-script-said-this; exit 3"]'
    )
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", CACHEDIR)
    assert proc.returncode == 1
    assert "error: postprocess script #1 failed with exit status 3" in proc.stderr
    assert "the-script-said-this" in proc.stderr
    assert not repo.exists()


def test_tree_without_kernel_is_committed_as_not_bootable(tmp_path: Path) -> None:
    extra = tmp_path / "hello.conf"
    extra.write_text("hello\n")
    tf = essential_treefile(
        tmp_path / "tf.yaml",
        postprocess='["test -e /etc/hello.conf && touch /usr/share/postprocess-ran"]',
        **{"add-files": "[[hello.conf, /etc/hello.conf]]"},
    )
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", CACHEDIR)
    assert proc.returncode == 0, proc.stderr
    assert "not be bootable" in proc.stderr
    csum = ostree(repo, "rev-parse", "test/x86_64/essential").strip()
    meta = ostree_repo.read_commit(ostree_repo.open_repo(repo), csum).metadata
    assert meta["ostree.bootable"] is False and "ostree.linux" not in meta
    assert ostree(repo, "cat", csum, "/usr/etc/hello.conf") == "hello\n"
    assert ostree(repo, "ls", csum, "/usr/share/postprocess-ran")


def test_lockfile_compose_installs_the_locked_set_after_the_sources_gain_newer_versions(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    old = (DebSpec("lockfile-app", "1.0", depends="lockfile-lib (>= 1.0)"),
           DebSpec("lockfile-lib", "1.0"))  # fmt: skip
    new = (DebSpec("lockfile-app", "2.0", depends="lockfile-lib (>= 2.0)"),
           DebSpec("lockfile-lib", "2.0"))  # fmt: skip
    extra = publish_repo(old, tmp_path / "extra", signing_key)
    # copy:, not file:: mmdebstrap's dpkg runs in the tree, where file: paths do not exist.
    extra = dataclasses.replace(extra, uri=f"copy:{extra.path}/")
    tf = tmp_path / "tf.json"
    tf.write_text(json.dumps({
        "ref": "test/x86_64/locked", "suite": "bookworm", "recommends": False,
        "documentation": False, "packages": ["lockfile-app"],
        "sources": [*host_sources(), fixture_sources(extra, signing_key)],
    }))  # fmt: skip
    lock, repo = tmp_path / "lock.json", tmp_path / "repo"
    base = ("compose", "tree", tf, "--repo", repo, "--cachedir", CACHEDIR)
    proc = apt_ostree(*base, "--dry-run", "--ex-write-lockfile-to", lock)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(lock.read_text())["packages"]
    locked = {(name, e["version"], e["arch"]) for name, e in entries.items()}
    assert ("lockfile-app", "1.0", "amd64") in locked

    publish_repo(old + new, extra.path, signing_key)
    newest = apt_ostree(*base, "--dry-run")
    assert "lockfile-app 2.0 amd64" in newest.stdout.splitlines(), newest.stderr
    proc = apt_ostree(*base, "--ex-lockfile", lock, "--ex-lockfile-strict")
    assert proc.returncode == 0, proc.stderr
    csum = ostree(repo, "rev-parse", "test/x86_64/locked").strip()
    meta = ostree_repo.read_commit(ostree_repo.open_repo(repo), csum).metadata
    assert {tuple(p) for p in meta["apt-ostree.packages"]} == locked
    status = ostree(repo, "cat", csum, "/usr/share/dpkg/database/status")
    assert "Package: lockfile-lib\nStatus: install ok installed" in status
