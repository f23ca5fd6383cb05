"""Package layering with real dpkg and maintainer scripts, on a real Debian base.

After each install: `ostree fsck` clean, `dpkg --audit` clean inside the new
deployment, and the base commit unchanged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apt_ostree.boot.grubcfg import read_entries
from tests.fixtures.aptrepo import KERNEL_VERSION
from tests.fixtures.debianbase import DebianSysroot
from tests.fixtures.deployments import fsck
from tests.fixtures.layerpkgs import (
    APPEND_TARGET,
    APPENDED_LINE,
    LAYERED_KERNELS,
    SYSTEM_USER,
    TRIGGER_MARKER,
    layered_kernel_image,
)
from tests.fixtures.sentinels import plant_sentinels
from tests.fixtures.sysroot import apt_ostree, deployments_json


def install(sysroot: DebianSysroot, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return apt_ostree(sysroot.path, "install", *args)


def deployment_dir(sysroot: DebianSysroot, index: int = 0) -> Path:
    d = deployments_json(sysroot.path)[index]
    return sysroot.path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}"


def dpkg(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dpkg", f"--root={tree}", f"--admindir={tree}/usr/share/dpkg/database", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def ostree_cat(sysroot: DebianSysroot, checksum: str, path: str) -> str:
    return subprocess.run(
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "cat", checksum, path],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def assert_healthy(sysroot: DebianSysroot) -> Path:
    """fsck clean, dpkg --audit clean in the new deployment, base commit untouched."""
    fsck(sysroot.path)
    tree = deployment_dir(sysroot)
    audit = dpkg(tree, "--audit")
    assert audit.returncode == 0 and audit.stdout == "", audit.stdout + audit.stderr
    d = deployments_json(sysroot.path)[0]
    assert d["base-checksum"] == sysroot.base_checksum
    return tree


def assert_unchanged(sysroot: DebianSysroot) -> None:
    [d] = deployments_json(sysroot.path)
    assert d["checksum"] == sysroot.base_checksum
    fsck(sysroot.path)


@pytest.fixture
def layered(debian_sysroot: DebianSysroot, layer_repo: object) -> DebianSysroot:
    return debian_sysroot


def test_install_pulls_dependencies_and_makes_a_layered_deployment(
    layered: DebianSysroot,
) -> None:
    proc = install(layered, "dep-top")
    assert proc.returncode == 0, proc.stderr
    assert "dep-bottom" in proc.stdout and "dep-top" in proc.stdout
    tree = assert_healthy(layered)
    assert dpkg(tree, "-s", "dep-top").returncode == 0
    assert dpkg(tree, "-s", "dep-bottom").returncode == 0
    new, old = deployments_json(layered.path)
    assert new["requested-packages"] == ["dep-top"] and new["packages"] == ["dep-top"]
    assert old["checksum"] == layered.base_checksum
    status = apt_ostree(layered.path, "status").stdout
    assert "LayeredPackages: dep-top" in status and "BaseCommit: " in status


def test_uninstall_of_the_last_package_deploys_the_base_again(layered: DebianSysroot) -> None:
    assert install(layered, "dep-top").returncode == 0
    proc = apt_ostree(layered.path, "uninstall", "dep-top")
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["checksum"] == layered.base_checksum and d["requested-packages"] == []


def test_conflicting_request_is_an_error_and_nothing_is_deployed(layered: DebianSysroot) -> None:
    proc = install(layered, "dep-top", "conflicts-with-top")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "conflicts" in proc.stderr
    assert_unchanged(layered)


def test_unknown_package_is_an_error(layered: DebianSysroot) -> None:
    proc = install(layered, "no-such-package")
    assert proc.returncode == 1
    assert 'error: package "no-such-package" is not available' in proc.stderr
    assert_unchanged(layered)


def test_package_of_the_base_needs_allow_inactive(layered: DebianSysroot) -> None:
    proc = install(layered, "adduser")
    assert proc.returncode == 1
    assert "already in the base commit" in proc.stderr and "--allow-inactive" in proc.stderr
    assert_unchanged(layered)


def test_dry_run_prints_the_transaction_and_deploys_nothing(layered: DebianSysroot) -> None:
    proc = install(layered, "--dry-run", "dep-top")
    assert proc.returncode == 0, proc.stderr
    assert "dep-top" in proc.stdout and "Download size" in proc.stdout
    assert_unchanged(layered)


def test_system_user_becomes_a_sysusers_fragment(layered: DebianSysroot) -> None:
    proc = install(layered, "sysuser-fixture")
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    conf = (tree / "usr/lib/sysusers.d/apt-ostree-layer.conf").read_text()
    assert f"u {SYSTEM_USER} " in conf
    # The commit keeps the base's passwd; the user is created by systemd-sysusers.
    base_passwd = ostree_cat(layered, layered.base_checksum, "/usr/etc/passwd")
    assert (tree / "usr/etc/passwd").read_text() == base_passwd


def test_system_user_id_is_stable_across_rebuilds(layered: DebianSysroot) -> None:
    assert install(layered, "sysuser-fixture").returncode == 0
    first = (deployment_dir(layered) / "usr/lib/sysusers.d/apt-ostree-layer.conf").read_text()
    # Boot-time sysusers would add the user to /etc; emulate it in the merge deployment.
    etc = deployment_dir(layered) / "etc"
    line = next(x for x in first.splitlines() if x.startswith("u "))
    uid = line.split()[2].split(":")[0]
    with (etc / "passwd").open("a") as f:
        f.write(f"{SYSTEM_USER}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n")
    with (etc / "group").open("a") as f:
        f.write(f"{SYSTEM_USER}:x:{uid}:\n")
    assert install(layered, "dep-top").returncode == 0
    second = deployment_dir(layered) / "usr/lib/sysusers.d/apt-ostree-layer.conf"
    # The user exists already: no new line, the id is the machine's.
    assert not second.exists() or f"u {SYSTEM_USER} " not in second.read_text()


def test_systemd_unit_is_enabled(layered: DebianSysroot) -> None:
    proc = install(layered, "unit-fixture")
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    wants = tree / "usr/etc/systemd/system/multi-user.target.wants/fixture.service"
    assert wants.is_symlink()
    assert (tree / "usr/lib/apt-ostree/state/deb-systemd-helper-enabled").is_dir()


def test_conffile_lands_in_usr_etc(layered: DebianSysroot) -> None:
    assert install(layered, "conffile-fixture2").returncode == 0
    tree = assert_healthy(layered)
    assert (tree / "usr/etc/fixture2.conf").is_file()
    assert (tree / "etc/fixture2.conf").is_file()  # merged into the deployment's /etc


def test_alternatives_are_set_up(layered: DebianSysroot) -> None:
    assert install(layered, "alt-fixture").returncode == 0
    tree = assert_healthy(layered)
    assert (tree / "usr/bin/fixture-alt").is_symlink()
    assert (tree / "usr/etc/alternatives/fixture-alt").is_symlink()


def test_file_trigger_fires(layered: DebianSysroot) -> None:
    assert install(layered, "trigger-fixture", "trigger-activator").returncode == 0
    tree = assert_healthy(layered)
    assert (tree / TRIGGER_MARKER).exists()


def test_diversion_is_applied(layered: DebianSysroot) -> None:
    proc = install(layered, "divert-fixture", "divert-target")
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    assert (tree / "usr/bin/fixture-tool.distrib").exists()
    diversions = subprocess.run(
        ["dpkg-divert", f"--admindir={tree}/usr/share/dpkg/database", "--list"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "/usr/bin/fixture-tool to /usr/bin/fixture-tool.distrib by divert-fixture" in diversions


def test_var_content_becomes_tmpfiles_lines(layered: DebianSysroot) -> None:
    assert install(layered, "var-fixture").returncode == 0
    tree = assert_healthy(layered)
    conf = (tree / "usr/lib/tmpfiles.d/apt-ostree-layer-var.conf").read_text()
    assert "d /var/lib/var-fixture " in conf and "d /var/cache/var-fixture " in conf
    assert "C /var/lib/var-fixture/state " in conf
    assert list((tree / "var").iterdir()) == [] or not (tree / "var/lib/var-fixture").exists()


def test_opt_content_is_relocated_to_usr_lib_opt(layered: DebianSysroot) -> None:
    assert install(layered, "opt-fixture").returncode == 0
    tree = assert_healthy(layered)
    assert (tree / "usr/lib/opt/opt-fixture/bin/tool").is_file()
    conf = (tree / "usr/lib/tmpfiles.d/apt-ostree-layer-opt.conf").read_text()
    assert "L /var/opt/opt-fixture - - - - /usr/lib/opt/opt-fixture" in conf


def test_failing_postinst_aborts_and_shows_its_output(layered: DebianSysroot) -> None:
    proc = install(layered, "failing-postinst")
    assert proc.returncode == 1
    assert "failing-postinst: about to fail" in proc.stderr
    assert_unchanged(layered)


def test_in_place_append_never_reaches_the_repository(layered: DebianSysroot) -> None:
    before = ostree_cat(layered, layered.base_checksum, "/" + APPEND_TARGET)
    assert install(layered, "appender").returncode == 0
    tree = assert_healthy(layered)
    assert APPENDED_LINE in (tree / APPEND_TARGET).read_text()
    assert ostree_cat(layered, layered.base_checksum, "/" + APPEND_TARGET) == before
    assert APPENDED_LINE not in (layered.deployment / APPEND_TARGET).read_text()


def test_kernel_module_regenerates_the_initramfs(layered: DebianSysroot) -> None:
    proc = install(layered, "kernel-module-fixture")
    assert proc.returncode == 0, proc.stderr
    assert "Regenerating the initramfs" in proc.stderr
    assert_healthy(layered)


def booted_kernel(sysroot: DebianSysroot) -> str:
    """The kernel version of the default boot entry (libostree's /boot copy)."""
    entry = read_entries(sysroot.path / "boot/loader/entries")[0]
    return entry.linux.rsplit("/vmlinuz-", 1)[1]


def test_a_newer_layered_kernel_moves_to_usr_lib_modules_and_is_booted(
    layered: DebianSysroot,
) -> None:
    kver = LAYERED_KERNELS["kernel-image-new"]
    proc = install(layered, "kernel-image-new")
    assert proc.returncode == 0, proc.stderr
    assert f"Booting kernel {kver}, the newest of {KERNEL_VERSION} and it" in proc.stderr
    tree = assert_healthy(layered)
    moddir = tree / f"usr/lib/modules/{kver}"
    assert (moddir / "vmlinuz").read_bytes() == layered_kernel_image(kver)
    assert (moddir / "config").read_text() == "CONFIG_FIXTURE=y\n"
    assert (moddir / "System.map").is_file()
    assert (
        moddir / "initramfs.img"
    ).read_text() == "fake-initramfs\n"  # apt-ostree's, not the hook's
    assert list((tree / "boot").iterdir()) == []
    assert not (tree / "vmlinuz").is_symlink()
    # The base kernel keeps its modules but is not bootable in this tree: libostree
    # would boot whichever vmlinuz it found first.
    assert (tree / f"usr/lib/modules/{KERNEL_VERSION}").is_dir()
    assert not (tree / f"usr/lib/modules/{KERNEL_VERSION}/vmlinuz").exists()
    assert booted_kernel(layered) == kver
    d = deployments_json(layered.path)[0]
    assert d["kernel"] == kver
    assert f"Kernel: {kver} (layered)" in apt_ostree(layered.path, "status").stdout
    # Uninstalled: the base kernel again.
    assert apt_ostree(layered.path, "uninstall", "kernel-image-new").returncode == 0
    assert booted_kernel(layered) == KERNEL_VERSION
    assert "kernel" not in deployments_json(layered.path)[0]


def test_an_older_layered_kernel_is_installed_but_the_base_kernel_stays_booted(
    layered: DebianSysroot,
) -> None:
    kver = LAYERED_KERNELS["kernel-image-old"]
    proc = install(layered, "kernel-image-old")
    assert proc.returncode == 0, proc.stderr
    tree = assert_healthy(layered)
    assert (tree / f"usr/lib/modules/{kver}/config").is_file()
    assert not (tree / f"usr/lib/modules/{kver}/vmlinuz").exists()
    assert (tree / f"usr/lib/modules/{KERNEL_VERSION}/vmlinuz").is_file()
    assert booted_kernel(layered) == KERNEL_VERSION
    assert "kernel" not in deployments_json(layered.path)[0]


@pytest.mark.parametrize(("package", "where"), [("usrlocal-fixture", "/usr/local"),
                                                 ("boot-fixture", "/boot")])  # fmt: skip
def test_usr_local_and_boot_content_is_refused(
    layered: DebianSysroot, package: str, where: str
) -> None:
    proc = install(layered, package)
    assert proc.returncode == 1
    assert where in proc.stderr.strip().splitlines()[-1]
    assert_unchanged(layered)


def test_local_deb_is_layered_and_kept_for_rebuilds(
    layered: DebianSysroot, layer_debs: dict[str, Path]
) -> None:
    proc = install(layered, layer_debs["dep-bottom"])
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert [e.split(":", 1)[1] for e in d["requested-local-packages"]] == [
        "dep-bottom_1.0_amd64"
    ] or d["requested-local-packages"][0].endswith("dep-bottom_1.0_all")
    assert install(layered, "dep-top").returncode == 0  # rebuild finds the stored .deb
    assert dpkg(deployment_dir(layered), "-s", "dep-bottom").returncode == 0


@pytest.mark.parametrize("name", ["hostile-dotdot", "hostile-absolute"])
def test_deb_with_paths_outside_the_tree_is_refused(
    layered: DebianSysroot, hostile_debs: dict[str, Path], name: str
) -> None:
    proc = install(layered, hostile_debs[name])
    assert proc.returncode == 1
    assert "outside the tree" in proc.stderr
    assert_unchanged(layered)


@pytest.mark.parametrize("name", ["hostile-network", "hostile-rmrf"])
def test_hostile_postinst_is_contained(
    layered: DebianSysroot, hostile_debs: dict[str, Path], name: str
) -> None:
    # Where the postinst would reach if the sandbox leaked: the overlay's lower layer,
    # the machine's /etc, the sysroot and its stored .debs, the host (sentinels.py).
    sentinels = plant_sentinels(layered)
    proc = install(layered, hostile_debs[name])
    assert proc.returncode == 1, proc.stdout
    sentinels.assert_untouched()
    assert_unchanged(layered)


def _new_base(sysroot: DebianSysroot, tmp_path: Path) -> str:
    """A newer base commit in the sysroot's repo: the base plus one file."""
    extra = tmp_path / "extra"
    (extra / "usr/share").mkdir(parents=True)
    (extra / "usr/share/new-base-marker").write_text("new base\n")
    return subprocess.run(
        ["ostree", f"--repo={sysroot.path}/ostree/repo", "commit", "--orphan",
         f"--parent={sysroot.base_checksum}", "--owner-uid=0", "--owner-gid=0",
         f"--tree=ref={sysroot.base_checksum}", f"--tree=dir={extra}", "-s", "newer base"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_deploying_a_new_base_applies_the_layer_again(
    layered: DebianSysroot, tmp_path: Path
) -> None:
    assert install(layered, "dep-top").returncode == 0
    new_base = _new_base(layered, tmp_path)
    proc = apt_ostree(layered.path, "deploy", "--skip-branch-check", new_base)
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(layered.path)[0]
    assert d["base-checksum"] == new_base and d["packages"] == ["dep-top"]
    tree = deployment_dir(layered)
    assert (tree / "usr/share/new-base-marker").exists()
    assert dpkg(tree, "-s", "dep-top").returncode == 0
    fsck(layered.path)


def test_cleanup_base_removes_stored_local_debs_no_deployment_uses(
    layered: DebianSysroot, layer_debs: dict[str, Path]
) -> None:
    store = layered.path / "ostree/apt-ostree/local-debs"
    assert install(layered, layer_debs["dep-bottom"]).returncode == 0
    # A failed local install has stored its .deb too (the postinst exits 1).
    assert install(layered, layer_debs["failing-postinst"]).returncode == 1
    assert len(list(store.iterdir())) == 2
    proc = apt_ostree(layered.path, "cleanup", "-b")
    assert proc.returncode == 0, proc.stderr
    assert "Removed 1 stored local packages" in proc.stdout
    [kept] = store.iterdir()
    origin = deployments_json(layered.path)[0]["requested-local-packages"]
    assert [e.split(":", 1)[0] for e in origin] == [kept.stem]
    # The rollback deployment and the default one no longer name it after an uninstall
    # and the removal of the rollback: then it goes.
    assert apt_ostree(layered.path, "uninstall", "dep-bottom").returncode == 0
    assert apt_ostree(layered.path, "cleanup", "-r").returncode == 0
    assert list(store.iterdir()) == []
