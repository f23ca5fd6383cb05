"""The layering fixtures: what the layering tests rely on them to be.

The Debian base is real (composed from the host's APT sources on the first run
on a machine, then reused from the test cache); the layer packages are synthetic.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import apt_pkg
import pytest

from apt_ostree.debian.resolve import resolve_tree
from apt_ostree.debian.sources import host_sources
from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.aptrepo import KERNEL_VERSION, AptRepo
from tests.fixtures.debianbase import (
    BASE_PACKAGES,
    BOOTABLE_REF,
    COMPOSED_KEY,
    DebianBase,
    DebianSysroot,
    debian_base_commit,
)
from tests.fixtures.layerpkgs import (
    APPEND_TARGET,
    HOSTILE_MEMBERS,
    LAYER_PACKAGES,
    TRIGGER_MARKER,
)
from tests.fixtures.sysroot import apt_ostree, ostree_admin_status


def ostree(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ostree", f"--repo={repo}", *args], capture_output=True, text=True, check=False
    )


def in_base(base: DebianBase, path: str) -> bool:
    return ostree(base.repo, "ls", "-d", base.checksum, path).returncode == 0


def base_packages(base: DebianBase, checksum: str | None = None) -> dict[str, str]:
    repo = ostree_repo.open_repo(base.repo)
    meta = ostree_repo.read_commit(repo, checksum or base.checksum).metadata
    return {name: version for name, version, _ in meta["apt-ostree.packages"]}


def deb_info(deb: Path, *members: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--info", str(deb), *members], capture_output=True, text=True, check=True
    ).stdout


# --- the Debian base commit ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/usr/bin/dpkg",
        "/usr/bin/dpkg-divert",
        "/usr/bin/update-alternatives",
        "/usr/sbin/adduser",
        "/usr/bin/systemctl",
        "/usr/bin/deb-systemd-helper",
        "/usr/bin/deb-systemd-invoke",
        "/usr/bin/bash",
        "/usr/bin/getent",
        "/usr/share/dpkg/database/status",
        "/usr/etc/os-release",
    ],
)
def test_debian_base_has_what_maintainer_scripts_call(debian_base: DebianBase, path: str) -> None:
    assert in_base(debian_base, path)


def test_debian_base_has_the_fake_kernel_and_dracut(debian_base: DebianBase) -> None:
    for path in ("vmlinuz", "initramfs.img"):
        assert in_base(debian_base, f"/usr/lib/modules/{KERNEL_VERSION}/{path}")
    assert in_base(debian_base, "/usr/bin/dracut")
    assert in_base(debian_base, "/usr/lib/dracut/modules.d/98ostree")


def test_debian_base_is_bootable_and_keeps_the_composed_metadata(debian_base: DebianBase) -> None:
    repo = ostree_repo.open_repo(debian_base.repo)
    meta = ostree_repo.read_commit(repo, debian_base.checksum).metadata
    composed = ostree_repo.read_commit(repo, debian_base.composed_checksum).metadata
    assert meta["ostree.bootable"] is True
    assert meta["ostree.linux"] == KERNEL_VERSION
    assert meta[COMPOSED_KEY] == debian_base.composed_checksum
    assert composed["ostree.bootable"] is False
    assert meta["apt-ostree.packages"] == composed["apt-ostree.packages"]


def test_debian_base_package_list_has_the_requested_packages(debian_base: DebianBase) -> None:
    packages = base_packages(debian_base)
    assert {*BASE_PACKAGES, "dpkg", "base-files", "passwd"} <= packages.keys()


def test_debian_base_has_none_of_the_layer_packages(debian_base: DebianBase) -> None:
    assert not {spec.name for spec in LAYER_PACKAGES} & base_packages(debian_base).keys()
    # divert-target is layered together with divert-fixture: the base must not ship its file.
    assert not in_base(debian_base, "/usr/bin/fixture-tool")
    assert not in_base(debian_base, f"/{TRIGGER_MARKER}")


def test_debian_base_has_the_file_that_appender_appends_to(debian_base: DebianBase) -> None:
    out = ostree(debian_base.repo, "ls", debian_base.checksum, f"/{APPEND_TARGET}").stdout
    assert out.startswith("-")  # a regular file


def test_debian_base_repo_fsck_is_clean(debian_base: DebianBase) -> None:
    proc = ostree(debian_base.repo, "fsck", "-q")
    assert proc.returncode == 0, proc.stderr


def test_debian_base_is_reused_when_nothing_changed(debian_base: DebianBase) -> None:
    assert debian_base_commit() == debian_base


# --- the layer repository -------------------------------------------------------------


def _packages_index(repo: AptRepo) -> dict[str, dict[str, str]]:
    path = repo.path / "dists" / repo.suite / "main" / f"binary-{repo.arch}" / "Packages"
    with apt_pkg.TagFile(str(path)) as tags:
        return {section["Package"]: dict(section) for section in tags}


def test_every_layer_package_is_in_the_signed_index(layer_repo: AptRepo) -> None:
    assert layer_repo.keyring is not None
    inrelease = layer_repo.path / "dists" / layer_repo.suite / "InRelease"
    subprocess.run(["gpgv", "--keyring", str(layer_repo.keyring), str(inrelease)], check=True,
                   capture_output=True)  # fmt: skip
    index = _packages_index(layer_repo)
    assert set(index) == {spec.name for spec in LAYER_PACKAGES}
    for spec in LAYER_PACKAGES:
        assert index[spec.name]["Version"] == spec.version
        assert (layer_repo.path / index[spec.name]["Filename"]).is_file()


def test_layer_package_relationships(layer_repo: AptRepo) -> None:
    index = _packages_index(layer_repo)
    assert index["dep-top"]["Depends"].startswith("dep-bottom")
    assert index["conflicts-with-top"]["Conflicts"] == "dep-top"
    assert index["trigger-activator"]["Pre-Depends"] == "trigger-fixture"


def test_layer_packages_carry_their_control_files(layer_debs: dict[str, Path]) -> None:
    assert deb_info(layer_debs["trigger-fixture"], "triggers") == (
        "interest /usr/share/fixture-trigger\n"
    )
    assert deb_info(layer_debs["conffile-fixture2"], "conffiles") == "/etc/fixture2.conf\n"
    assert "adduser --system" in deb_info(layer_debs["sysuser-fixture"], "postinst")
    assert "deb-systemd-helper enable 'fixture.service'" in deb_info(
        layer_debs["unit-fixture"], "postinst"
    )
    assert "update-alternatives --install" in deb_info(layer_debs["alt-fixture"], "postinst")
    assert "dpkg-divert --package divert-fixture --add" in deb_info(
        layer_debs["divert-fixture"], "preinst"
    )
    assert f">> /{APPEND_TARGET}" in deb_info(layer_debs["appender"], "postinst")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("divert-target", "./usr/bin/fixture-tool"),
        ("trigger-activator", "./usr/share/fixture-trigger/activator"),
        ("var-fixture", "./var/cache/var-fixture/"),
        ("var-fixture", "./var/lib/var-fixture/state"),
        ("opt-fixture", "./opt/opt-fixture/bin/tool"),
        ("kernel-module-fixture", f"./usr/lib/modules/{KERNEL_VERSION}/extra/fixture.ko"),
        ("usrlocal-fixture", "./usr/local/bin/x"),
        ("boot-fixture", "./boot/x"),
    ],
)
def test_layer_package_ships(layer_debs: dict[str, Path], name: str, path: str) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(layer_debs[name])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert path in {line.split()[-1] for line in listing.splitlines()}


# --- hostile .debs --------------------------------------------------------------------


def _data_listing(deb: Path) -> list[str]:
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True, check=True)
    data = next(m for m in members.stdout.split() if m.startswith("data.tar"))
    blob = subprocess.run(["ar", "p", str(deb), data], capture_output=True, check=True).stdout
    listing = subprocess.run(
        ["tar", "-tvzf", "-"], input=blob, capture_output=True, check=True
    ).stdout.decode()
    return [line.split()[-1] for line in listing.splitlines()]


@pytest.mark.parametrize("name", sorted(HOSTILE_MEMBERS))
def test_hostile_deb_data_tar_has_the_hostile_path(
    hostile_debs: dict[str, Path], name: str
) -> None:
    assert HOSTILE_MEMBERS[name] in _data_listing(hostile_debs[name])


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("hostile-network", "exec 3<>/dev/tcp/127.0.0.1/9"),
        ("hostile-network", "getent hosts example.invalid"),
        ("hostile-rmrf", "rm -rf --no-preserve-root /"),
    ],
)
def test_hostile_deb_postinst_runs(hostile_debs: dict[str, Path], name: str, command: str) -> None:
    assert command in deb_info(hostile_debs[name], "postinst")


# --- the deployed Debian sysroot ------------------------------------------------------


def test_debian_sysroot_has_the_base_deployed(debian_sysroot: DebianSysroot) -> None:
    s = debian_sysroot
    assert s.base_checksum == s.base.checksum
    assert s.deployment == s.path / f"ostree/deploy/debian/deploy/{s.base_checksum}.0"
    assert (s.deployment / "usr/bin/dpkg").is_file()
    assert (s.etc / "os-release").exists()
    assert s.base_checksum in ostree_admin_status(s.path)
    origin = (s.deployment.parent / f"{s.base_checksum}.0.origin").read_text()
    assert f"refspec=origin:{BOOTABLE_REF}" in origin


def test_debian_sysroot_upgrade_finds_nothing_new(debian_sysroot: DebianSysroot) -> None:
    proc = apt_ostree(debian_sysroot.path, "upgrade", "--unchanged-exit-77")
    assert proc.returncode == 77, proc.stderr


def test_debian_sysroot_apt_sources_are_only_the_layer_repo(
    debian_sysroot: DebianSysroot, layer_repo: AptRepo
) -> None:
    apt = debian_sysroot.etc / "apt"
    assert not (apt / "sources.list").exists()
    assert sorted(p.name for p in (apt / "sources.list.d").iterdir()) == ["fixture.sources"]
    stanzas = host_sources(debian_sysroot.deployment)
    assert len(stanzas) == 1
    assert f"URIs: {layer_repo.uri}" in stanzas[0]
    assert "-----BEGIN PGP PUBLIC KEY BLOCK-----" in stanzas[0]


def test_debian_sysroot_apt_sources_resolve_layer_packages_offline(
    debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    packages = resolve_tree(
        host_sources(debian_sysroot.deployment),
        ["dep-top"],
        arch="amd64",
        statedir=tmp_path / "apt",
        essential=False,
    )
    assert [(p.name, p.version) for p in packages] == [("dep-bottom", "1.0"), ("dep-top", "1.0")]
