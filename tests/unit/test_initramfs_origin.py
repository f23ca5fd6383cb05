"""The origin's initramfs keys (rpm-ostree's) and the initramfs-etc archive."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import cast

import pytest

from apt_ostree.system.initramfs_etc import InitramfsEtcError, build_cpio, normalize
from apt_ostree.system.origin import Origin
from apt_ostree.system.packages import PackageChange, apply_change
from apt_ostree.system.sysroot import Sysroot


def test_initramfs_keys_round_trip_in_rpm_ostree_s_group() -> None:
    origin = Origin(
        "origin:debian/12/x86_64", regenerate_initramfs=True,
        initramfs_args=["--add-drivers", "nvme"], initramfs_etc=["/etc/crypttab"],
    )  # fmt: skip
    sections = origin.to_dict()
    assert sections["rpmostree"] == {
        "regenerate-initramfs": "true",
        "initramfs-args": "--add-drivers;nvme;",
        "initramfs-etc": "/etc/crypttab;",
    }
    assert Origin.from_dict(sections) == origin
    assert "rpmostree" not in Origin("origin:x").to_dict()


def test_reset_initramfs_keeps_the_overrides_and_reset_overrides_keeps_the_initramfs() -> None:
    origin = Origin(
        "origin:debian/13/x86_64", replaced_remote=["hostname", "bash=5.2.37-2"],
        regenerate_initramfs=True, initramfs_args=["-v"], initramfs_etc=["/etc/crypttab"],
    )  # fmt: skip
    assert Origin.from_dict(origin.to_dict()) == origin
    no_sysroot = cast(Sysroot, None)  # no local .deb: the sysroot is not read
    reset_i = apply_change(no_sysroot, origin, PackageChange(reset_initramfs=True))
    assert reset_i.replaced_remote == origin.replaced_remote
    assert not reset_i.regenerate_initramfs and not reset_i.initramfs_args
    assert reset_i.initramfs_etc == [] and "rpmostree" not in reset_i.to_dict()
    reset_o = apply_change(no_sysroot, origin, PackageChange(reset_all_overrides=True))
    assert reset_o.replaced_remote == [] and "overrides" not in reset_o.to_dict()
    assert reset_o.to_dict()["rpmostree"] == origin.to_dict()["rpmostree"]


@pytest.mark.parametrize("path", ["etc/x", "/usr/etc/x", "/etc/../root/x", "/etc", "/etc/a;b"])
def test_only_paths_under_etc_are_tracked(path: str) -> None:
    with pytest.raises(InitramfsEtcError):
        normalize(path)


def test_archive_holds_files_links_and_parents_and_follows_no_link(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "sub/deeper").mkdir(parents=True)
    (etc / "sub/deeper/a.conf").write_text("a\n")
    (etc / "link").symlink_to("/etc/shadow")
    data = build_cpio(etc, ["/etc/sub/deeper/a.conf", "/etc/link", "/etc/missing"])
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "-D", str(out)], input=data, check=True)
    assert (out / "etc/sub/deeper/a.conf").read_text() == "a\n"
    assert (out / "link").exists() is False and (out / "etc/link").is_symlink()
    assert str((out / "etc/link").readlink()) == "/etc/shadow"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "etc", "etc/link", "etc/sub", "etc/sub/deeper", "etc/sub/deeper/a.conf",
    ]  # fmt: skip
    assert build_cpio(etc, ["/etc/missing"]) == b""
