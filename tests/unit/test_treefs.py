"""Paths inside a tree resolve inside it: absolute links against the tree's root,
`..` clamped there, no write through a link, no operation on a link's target."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.treefs import Tree, TreeError

DEEP_UP = "../" * 40


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the tree with a sentinel, as the host's /etc would be."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "sentinel").write_text("host content\n")
    (d / "sentinel").chmod(0o600)
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/lib").mkdir(parents=True)
    return r


@pytest.fixture
def tree(root: Path) -> Iterator[Tree]:
    with Tree(root) as t:
        yield t


def host_unchanged(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["sentinel"]
    assert (host / "sentinel").read_text() == "host content\n"
    assert stat.S_IMODE((host / "sentinel").stat().st_mode) == 0o600


def test_absolute_link_resolves_inside_the_root(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/link").symlink_to(host)
    # The host path exists, but inside the tree it names nothing.
    assert tree.read_text("usr/lib/link/sentinel") is None
    inside = root / str(host).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "sentinel").write_text("tree content\n")
    assert tree.read_text("usr/lib/link/sentinel") == "tree content\n"
    host_unchanged(host)


def test_dotdot_is_clamped_at_the_root(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/up").symlink_to(DEEP_UP + str(host).lstrip("/"))
    assert (root / "usr/lib/up/sentinel").read_text() == "host content\n"  # plain paths escape
    assert tree.read_text("usr/lib/up/sentinel") is None
    assert tree.listdir("usr/lib/up") == []
    assert tree.stat("usr/lib/up/sentinel") is None


def test_reading_follows_links_inside_the_tree(tree: Tree, root: Path) -> None:
    (root / "usr/lib/os-release").write_text("ID=debian\n")
    (root / "usr/lib/abs").symlink_to("/usr/lib/os-release")
    (root / "usr/lib/rel").symlink_to("os-release")
    assert tree.read_text("usr/lib/abs") == "ID=debian\n"
    assert tree.read_text("usr/lib/rel") == "ID=debian\n"


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_writing_through_a_link_is_refused_and_nothing_leaves_the_tree(
    tree: Tree, root: Path, host: Path, kind: str
) -> None:
    target = str(host) if kind == "absolute" else DEEP_UP + str(host).lstrip("/")
    (root / "usr/lib/tmpfiles.d").symlink_to(target)
    with pytest.raises(TreeError, match=r"^/usr/lib/tmpfiles.d is a symbolic link$"):
        tree.write_text("usr/lib/tmpfiles.d/x.conf", "d /var/x\n")
    with pytest.raises(TreeError, match=r"/usr/lib/tmpfiles\.d is a symbolic link"):
        tree.makedirs("usr/lib/tmpfiles.d/sub")
    with pytest.raises(TreeError, match=r"/usr/lib/tmpfiles\.d is a symbolic link"):
        tree.chmod("usr/lib/tmpfiles.d/sentinel", 0o777)
    with pytest.raises(TreeError, match=r"/usr/lib/tmpfiles\.d is a symbolic link"):
        tree.remove("usr/lib/tmpfiles.d/sentinel")
    host_unchanged(host)


def test_writing_a_file_replaces_a_link_at_its_place(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/conf").symlink_to(host / "sentinel")
    tree.write_text("usr/lib/conf", "ours\n")
    assert not (root / "usr/lib/conf").is_symlink()
    assert (root / "usr/lib/conf").read_text() == "ours\n"
    host_unchanged(host)


def test_unlink_of_a_link_removes_the_link_not_its_target(
    tree: Tree, root: Path, host: Path
) -> None:
    (root / "usr/lib/file-link").symlink_to(host / "sentinel")
    (root / "usr/lib/dir-link").symlink_to(host)
    tree.unlink("usr/lib/file-link")
    tree.remove("usr/lib/dir-link")
    assert list((root / "usr/lib").iterdir()) == []
    host_unchanged(host)


def test_chmod_of_a_link_is_refused(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/initramfs.img").symlink_to(host / "sentinel")
    with pytest.raises(TreeError, match=r"/usr/lib/initramfs\.img is a symbolic link"):
        tree.chmod("usr/lib/initramfs.img", 0o644)
    host_unchanged(host)


def test_makedirs_creates_real_directories(tree: Tree, root: Path) -> None:
    tree.makedirs("usr/share/factory/var/lib", 0o755)
    assert (root / "usr/share/factory/var/lib").is_dir()
    tree.makedirs("usr/share/factory/var/lib")  # exists already: fine
    (root / "usr/share/factory/var/file").write_text("")
    with pytest.raises(TreeError, match=r"/usr/share/factory/var/file is not a directory"):
        tree.makedirs("usr/share/factory/var/file/x")


def test_dangling_link_on_the_way_is_refused(tree: Tree, root: Path) -> None:
    (root / "usr/lib/opt").symlink_to("/nowhere")
    with pytest.raises(TreeError, match=r"/usr/lib/opt is a symbolic link"):
        tree.makedirs("usr/lib/opt/name")


def test_host_path_refuses_any_link(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/state").mkdir()
    assert tree.host_path("usr/lib/state") == root / "usr/lib/state"
    (root / "usr/lib/debconf").symlink_to(host)
    with pytest.raises(TreeError, match=r"/usr/lib/debconf is a symbolic link"):
        tree.host_path("usr/lib/debconf")
    with pytest.raises(FileNotFoundError):
        tree.host_path("usr/lib/missing")


def test_walk_never_descends_links(tree: Tree, root: Path, host: Path) -> None:
    (root / "usr/lib/real").mkdir()
    (root / "usr/lib/real/f").write_text("x")
    (root / "usr/lib/link").symlink_to(host)
    seen = {(d, tuple(sorted(dirs + files))) for d, dirs, files, _ in tree.walk("usr/lib")}
    assert seen == {(".", ("link", "real")), ("./real", ("f",))}


@pytest.mark.parametrize("how", ["copy", "move"])
def test_content_from_another_tree_keeps_metadata_and_links(
    tmp_path: Path, root: Path, host: Path, how: str
) -> None:
    scratch = tmp_path / "var"
    (scratch / "opt/app/bin").mkdir(parents=True)
    (scratch / "opt/app/bin/tool").write_text("#!/bin/sh\n")
    (scratch / "opt/app/bin/tool").chmod(0o750)
    os.chown(scratch / "opt/app/bin/tool", 123, 456)
    (scratch / "opt/app/escape").symlink_to(host)
    with Tree(scratch) as var, Tree(root) as tree:
        tree.makedirs("usr/lib/opt")
        # copy_from is what move_from does across filesystems (scratch /var -> overlay).
        if how == "copy":
            tree.copy_from(var, "opt/app", "usr/lib/opt/app")
        else:
            tree.move_from(var, "opt/app", "usr/lib/opt/app")
    moved = root / "usr/lib/opt/app"
    st = (moved / "bin/tool").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 123, 456)
    assert os.readlink(moved / "escape") == str(host)
    assert (scratch / "opt/app").exists() == (how == "copy")
    host_unchanged(host)


def test_move_onto_an_existing_entry_is_refused(tmp_path: Path, root: Path, host: Path) -> None:
    scratch = tmp_path / "var"
    (scratch / "opt/app").mkdir(parents=True)
    (root / "usr/lib/opt").mkdir()
    (root / "usr/lib/opt/app").symlink_to(host)
    with Tree(scratch) as var, Tree(root) as tree, pytest.raises(TreeError, match="exists"):
        tree.move_from(var, "opt/app", "usr/lib/opt/app")
    host_unchanged(host)


def test_read_of_a_fifo_does_not_hang(tree: Tree, root: Path) -> None:
    os.mkfifo(root / "usr/lib/fifo")
    assert tree.read_bytes("usr/lib/fifo") is None


def test_a_link_loop_reads_as_nothing(tree: Tree, root: Path) -> None:
    (root / "usr/lib/loop").symlink_to("loop")
    assert tree.read_bytes("usr/lib/loop") is None
    assert tree.listdir("usr/lib/loop") == []
    assert tree.stat("usr/lib/loop") is None
    assert tree.is_link("usr/lib/loop")
