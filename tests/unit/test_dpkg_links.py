"""Symlinks where apt-ostree writes after dpkg: which a package may ship, and the
sandbox's binds, which never take a link out of the tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.debian.dpkg import DebError, DpkgRoot, link_in_the_way
from apt_ostree.layout import DPKG_DB, STATE_DIR


@pytest.mark.parametrize(
    "path",
    [
        "usr/lib/opt",
        "usr/lib/opt/name",  # apt-ostree fills /usr/lib/opt itself
        "usr/lib",  # above a path apt-ostree writes
        "usr",
        "usr/lib/tmpfiles.d",
        "usr/lib/sysusers.d",
        "usr/share/factory",
        "usr/share/factory/var/lib/x",
        "usr/sbin/policy-rc.d",
        "usr/lib/modules/6.1.0-18-amd64/initramfs.img",
        "lib/modules/6.1.0-18-amd64/initramfs.img",  # /lib is /usr/lib
        "usr/share/dpkg/database",
        "usr/lib/apt-ostree/state/ucf",
        "var/lib/dpkg",
        "var/cache/debconf",
    ],
)
def test_link_where_apt_ostree_writes_is_in_the_way(path: str) -> None:
    assert link_in_the_way(path)


@pytest.mark.parametrize(
    "path",
    [
        "usr/bin/editor",  # alternatives, /etc/... links: ordinary
        "etc/systemd/system/multi-user.target.wants/x.service",
        "usr/lib/tmpfiles.d/x.conf",  # masking a tmpfiles file with /dev/null
        "usr/lib/sysusers.d/x.conf",
        "usr/share/factory/etc/nsswitch.conf",
        "usr/lib/modules/6.1.0-18-amd64/build",
        "lib",  # the merged-/usr link itself (trixie's base-files ships it)
        "etc/passwd",  # read inside the tree, never written through
        "opt/name",  # moves to /usr/lib/opt as the link it is
        "var/lib/name",  # becomes an L tmpfiles.d line
    ],
)
def test_ordinary_link_is_let_through(path: str) -> None:
    assert not link_in_the_way(path)


@pytest.fixture
def tree(tmp_path: Path) -> DpkgRoot:
    root, var = tmp_path / "root", tmp_path / "var"
    for d in ("usr/etc", DPKG_DB, f"{STATE_DIR}/debconf"):
        (root / d).mkdir(parents=True)
    var.mkdir()
    return DpkgRoot(root, var)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    return d


def test_binds_are_the_tree_directories(tree: DpkgRoot) -> None:
    tree.prepare()
    binds = dict((dest, src) for src, dest in tree.binds())
    assert binds["/etc"] == tree.root / "usr/etc"
    assert binds["/var/lib/dpkg"] == tree.root / DPKG_DB
    assert binds["/var/cache/debconf"] == tree.root / STATE_DIR / "debconf"
    assert (tree.var / "lib/dpkg").is_dir() and (tree.var / "cache/debconf").is_dir()


@pytest.mark.parametrize("planted", ["usr/etc", DPKG_DB, f"{STATE_DIR}/debconf", "usr/share"])
@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_bind_source_that_is_a_link_is_refused(
    tree: DpkgRoot, host: Path, planted: str, kind: str
) -> None:
    link = tree.root / planted
    link.rename(link.with_name(link.name + ".moved"))
    link.symlink_to(host if kind == "absolute" else "../" * 30 + str(host).lstrip("/"))
    with pytest.raises(DebError, match="is a symbolic link in the tree"):
        tree.binds()
    assert list(host.iterdir()) == []


def test_bind_mount_point_in_the_scratch_var_that_is_a_link_is_refused(
    tree: DpkgRoot, host: Path
) -> None:
    (tree.var / "lib").symlink_to(host)
    with pytest.raises(DebError, match="/var/lib is a symbolic link"):
        tree.prepare()
    assert list(host.iterdir()) == []
