"""The layout conversion of docs/layout.md, on small synthetic trees."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from apt_ostree.compose.postprocess import (
    PostprocessError,
    PostprocessOptions,
    merge_usr,
    postprocess_tree,
)
from tests.fixtures.trees import make_tree

KVER = "6.1.0-fake"


def tmpfiles(root: Path) -> str:
    return "".join(
        p.read_text() for p in sorted((root / "usr/lib/tmpfiles.d").glob("apt-ostree-*"))
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root", kernel=KVER)


def test_etc_moves_to_usr_etc(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    assert not (tree / "etc").exists()
    assert (tree / "usr/etc/os-release").is_file()


def test_kernel_and_initramfs_land_in_usr_lib_modules(tree: Path) -> None:
    result = postprocess_tree(tree, PostprocessOptions(initramfs_args=["--omit", "nfs"]))
    moddir = tree / "usr/lib/modules" / KVER
    assert result.kernel_version == KVER and result.bootable
    assert (moddir / "vmlinuz").read_text() == "kernel"
    assert (moddir / "config").is_file()
    assert (moddir / "initramfs.img").read_text() == "fake-initramfs\n"
    args = (tree / "usr/lib/dracut-args").read_text()
    assert "--no-hostonly" in args and "--add ostree" in args and "--omit nfs" in args
    assert list((tree / "boot").iterdir()) == []
    assert not (tree / "vmlinuz").is_symlink()


def test_tree_without_kernel_is_not_bootable(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", dracut=False)
    result = postprocess_tree(root, PostprocessOptions())
    assert result.kernel_version is None and not result.bootable


def test_kernel_without_dracut_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", kernel=KVER, dracut=False)
    with pytest.raises(PostprocessError, match="no dracut"):
        postprocess_tree(root, PostprocessOptions())


def test_two_kernels_are_refused(tree: Path) -> None:
    (tree / "boot/vmlinuz-6.2.0-other").write_text("k2")
    with pytest.raises(PostprocessError, match="2 kernels"):
        postprocess_tree(tree, PostprocessOptions())


def test_dpkg_database_moves_to_usr_with_tmpfiles_link(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    assert (tree / "usr/share/dpkg/database/status").is_file()
    assert "L /var/lib/dpkg - - - - ../../usr/share/dpkg/database\n" in tmpfiles(tree)


def test_deb_systemd_helper_state_travels_with_usr(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    moved = tree / "usr/lib/apt-ostree/state/deb-systemd-helper-enabled/foo.service.dsh-also"
    assert moved.is_file()
    target = "../../../usr/lib/apt-ostree/state/deb-systemd-helper-enabled"
    assert f"L /var/lib/systemd/deb-systemd-helper-enabled - - - - {target}\n" in tmpfiles(tree)


def test_var_is_empty_and_described_by_tmpfiles(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    assert list((tree / "var").iterdir()) == []
    lines = tmpfiles(tree)
    assert "d /var/mail 2775 root mail -" in lines
    assert "d /var/spool/cron 0755 root root -" in lines
    # caches and logs: directories kept, content dropped
    assert "d /var/cache/apt/archives" in lines
    assert "dash.deb" not in lines and "history.log" not in lines


def test_paths_declared_by_the_tree_tmpfiles_are_not_repeated(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    assert "/var/run " not in tmpfiles(tree)


def test_toplevel_directories_become_links(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    links = {"home": "var/home", "root": "var/roothome", "opt": "var/opt", "srv": "var/srv",
             "mnt": "var/mnt", "media": "run/media", "ostree": "sysroot/ostree",
             "tmp": "sysroot/tmp"}  # fmt: skip
    for name, target in links.items():
        assert (tree / name).readlink() == Path(target), name
    assert (tree / "usr/local").readlink() == Path("../var/usrlocal")
    assert (tree / "sysroot").is_dir() and not (tree / "sysroot").is_symlink()
    assert "d /var/usrlocal/bin 0755 root root -" in tmpfiles(tree)


def test_tmp_is_dir_keeps_a_sticky_tmp(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions(tmp_is_dir=True))
    assert (tree / "tmp").is_dir() and not (tree / "tmp").is_symlink()
    assert (tree / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_home_conf_is_overridden_for_the_var_home_link(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    override = (tree / "usr/etc/tmpfiles.d/home.conf").read_text()
    assert "Q /var/home 0755 - - -" in override and "q /var/srv 0755 - - -" in override


def test_machine_id_is_empty_and_host_files_are_dropped(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    assert (tree / "usr/etc/machine-id").read_text() == ""
    assert not (tree / "usr/etc/resolv.conf").exists()
    assert not (tree / "usr/etc/hostname").exists()


def test_machineid_compat_false_leaves_no_machine_id(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions(machineid_compat=False))
    assert not (tree / "usr/etc/machine-id").exists()


def test_files_in_usr_local_are_refused(tree: Path) -> None:
    (tree / "usr/local/bin/tool").write_text("x")
    with pytest.raises(PostprocessError, match="/usr/local"):
        postprocess_tree(tree, PostprocessOptions())


def test_content_in_home_is_refused(tree: Path) -> None:
    (tree / "home/user").mkdir()
    with pytest.raises(PostprocessError, match="/home is not empty"):
        postprocess_tree(tree, PostprocessOptions())


def test_postprocessed_tree_is_refused_a_second_time(tree: Path) -> None:
    postprocess_tree(tree, PostprocessOptions())
    (tree / "etc").mkdir()
    with pytest.raises(PostprocessError, match="already"):
        postprocess_tree(tree, PostprocessOptions())


def test_split_usr_is_merged(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin/ls").write_text("ls")
    (root / "bin/cat").write_text("old cat")
    (root / "usr/bin/cat").write_text("cat")
    merge_usr(root)
    assert (root / "bin").readlink() == Path("usr/bin")
    assert (root / "usr/bin/ls").read_text() == "ls"
    assert (root / "usr/bin/cat").read_text() == "cat"


# --- a tree with links planted out of it -----------------------------------------------
#
# The tree is what packages and scripts made: a link in it may point anywhere on the
# host. Each case plants one, absolute and relative (`../` past the root), at a path
# the conversion goes through; the conversion either refuses the tree or converts it,
# and never touches what the link points at.

UP = "../" * 40

# path -> what postprocess does: "refused" (PostprocessError) or a check of the result
PLANTED = {
    "usr/etc": "refused",  # looks postprocessed already
    "etc": "refused",  # machine-id, tmpfiles.d overrides are written under it
    "etc/tmpfiles.d": "refused",  # the home.conf override is written there
    "usr/lib/tmpfiles.d": "refused",
    "usr/share/factory": "refused",  # /var files are copied under it
    "usr/share/factory/var": "refused",
    "usr/lib/modules": "refused",
    "var": "refused",
    "var/lib/dpkg": "L line",  # not moved: /var/lib/dpkg stays the package's link
    "var/lib/systemd/deb-systemd-helper-enabled": "L line",
    "boot": "empty dir",
    "tmp": "empty dir",  # with tmp-is-dir
    "usr/local": "toplevel link",
}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir(mode=0o700)
    (d / "sentinel").write_text("host content\n")
    (d / "sentinel").chmod(0o600)
    (d / "vmlinuz").write_text("not a kernel of the tree\n")
    return d


def host_unchanged(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["sentinel", "vmlinuz"]
    assert (host / "sentinel").read_text() == "host content\n"
    assert stat.S_IMODE((host / "sentinel").stat().st_mode) == 0o600
    assert stat.S_IMODE(host.stat().st_mode) == 0o700


@pytest.mark.parametrize("kind", ["absolute", "relative"])
@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_links_planted_in_the_tree_are_never_followed_out_of_it(
    tmp_path: Path, host: Path, planted: str, kind: str
) -> None:
    root = make_tree(tmp_path / "root", dracut=False)
    (root / "var/lib/thing").mkdir()
    (root / "var/lib/thing/state").write_text("kept in the factory\n")
    link = root / planted
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    target = str(host) if kind == "absolute" else UP + str(host).lstrip("/")
    link.symlink_to(target)
    expected = PLANTED[planted]
    options = PostprocessOptions(tmp_is_dir=planted == "tmp")
    if expected == "refused":
        with pytest.raises(PostprocessError):
            postprocess_tree(root, options)
    else:
        postprocess_tree(root, options)
        if expected == "L line":
            assert f"L /{planted} - - - - {target}\n" in tmpfiles(root)
        elif expected == "empty dir":
            assert (root / planted).is_dir() and not (root / planted).is_symlink()
            assert list((root / planted).iterdir()) == []
        else:
            assert (root / planted).readlink() == Path("../var/usrlocal")
    host_unchanged(host)
