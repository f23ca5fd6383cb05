"""`apt-ostree initramfs` on offline sysroots: the origin's keys, status, the
regenerated initramfs kept by later deployments, and `--disable`.

The Debian base fixture has a fake dracut (tests/fixtures/trees.py: it writes
"fake-initramfs"); the test with real dracut uses the VM tests' cached bootable
tree (real kernel, dracut and ostree-boot)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter
from tests.fixtures.aptrepo import KERNEL_VERSION
from tests.fixtures.debianbase import BOOT_FILES, CACHEDIR, DebianSysroot, mounted_tmpfs
from tests.fixtures.deployments import fsck
from tests.fixtures.sysroot import apt_ostree, deployments_json
from tests.integration.test_layering import _new_base

BASE_INITRAMFS = BOOT_FILES[f"usr/lib/modules/{KERNEL_VERSION}/initramfs.img"][0]
FAKE_DRACUT_OUTPUT = b"fake-initramfs\n"


def deployment_dir(path: Path, index: int = 0) -> Path:
    d = deployments_json(path)[index]
    return path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}"


def origin_of(path: Path, index: int = 0) -> configparser.ConfigParser:
    d = deployments_json(path)[index]
    origin = configparser.ConfigParser(interpolation=None)
    origin.read(path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}.origin")
    return origin


def initramfs_of(path: Path, kver: str = KERNEL_VERSION) -> bytes:
    return (deployment_dir(path) / f"usr/lib/modules/{kver}/initramfs.img").read_bytes()


def run_ok(path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = apt_ostree(path, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_enable_records_the_origin_and_is_kept_by_later_deployments_until_disable(
    debian_sysroot: DebianSysroot, tmp_path: Path
) -> None:
    path = debian_sysroot.path
    assert run_ok(path, "initramfs").stdout == "Initramfs regeneration: disabled\n"
    assert initramfs_of(path) == BASE_INITRAMFS

    run_ok(path, "initramfs", "--enable", "--arg=--add-drivers", "--arg=loop")
    origin = origin_of(path)
    assert origin["rpmostree"]["regenerate-initramfs"] == "true"
    assert origin["rpmostree"]["initramfs-args"] == "--add-drivers;loop;"
    [new, old] = deployments_json(path)
    assert new["regenerate-initramfs"] is True
    assert new["initramfs-args"] == ["--add-drivers", "loop"]
    assert new["checksum"] != debian_sysroot.base_checksum
    assert new["base-checksum"] == debian_sysroot.base_checksum
    assert old["regenerate-initramfs"] is False
    assert initramfs_of(path) == FAKE_DRACUT_OUTPUT
    shown = run_ok(path, "initramfs").stdout
    assert shown == "Initramfs regeneration: enabled\nInitramfs args: --add-drivers loop\n"

    # Same request again: nothing to do.
    again = run_ok(path, "initramfs", "--enable", "--arg=--add-drivers", "--arg=loop")
    assert "unchanged" in again.stdout and len(deployments_json(path)) == 2

    # A new base (the path upgrade takes): the initramfs is rebuilt on it.
    new_base = _new_base(debian_sysroot, tmp_path)
    run_ok(path, "deploy", "--skip-branch-check", new_base)
    d = deployments_json(path)[0]
    assert d["base-checksum"] == new_base and d["checksum"] != new_base
    assert d["initramfs-args"] == ["--add-drivers", "loop"]
    assert (deployment_dir(path) / "usr/share/new-base-marker").exists()
    assert initramfs_of(path) == FAKE_DRACUT_OUTPUT

    # kargs redeploys the same commit: no rebuild.
    checksum = d["checksum"]
    run_ok(path, "kargs", "--append=initramfs-test")
    assert deployments_json(path)[0]["checksum"] == checksum

    run_ok(path, "initramfs", "--disable")
    d = deployments_json(path)[0]
    assert d["checksum"] == new_base and d["regenerate-initramfs"] is False
    assert d["initramfs-args"] == []
    assert not origin_of(path).has_section("rpmostree")
    assert initramfs_of(path) == BASE_INITRAMFS
    fsck(path)


def test_initramfs_is_rebuilt_on_a_layered_deployment(
    debian_sysroot: DebianSysroot, layer_repo: object
) -> None:
    path = debian_sysroot.path
    run_ok(path, "initramfs", "--enable")
    run_ok(path, "install", "dep-top")
    d = deployments_json(path)[0]
    assert d["packages"] == ["dep-top"] and d["regenerate-initramfs"] is True
    assert d["base-checksum"] == debian_sysroot.base_checksum
    assert initramfs_of(path) == FAKE_DRACUT_OUTPUT
    run_ok(path, "initramfs", "--disable")
    d = deployments_json(path)[0]
    assert d["packages"] == ["dep-top"] and initramfs_of(path) == BASE_INITRAMFS


def test_reset_initramfs_stops_regeneration_and_tracking_as_plain_reset_does(
    debian_sysroot: DebianSysroot, layer_repo: object
) -> None:
    path = debian_sysroot.path
    (debian_sysroot.etc / "early.conf").write_text("early\n")
    run_ok(path, "install", "dep-top")
    run_ok(path, "initramfs", "--enable")
    run_ok(path, "initramfs-etc", "--track=/etc/early.conf")
    run_ok(path, "reset", "-i")
    d = deployments_json(path)[0]
    assert d["packages"] == ["dep-top"]
    assert not d["regenerate-initramfs"] and d["initramfs-etc"] == []
    assert not origin_of(path).has_section("rpmostree")
    assert initramfs_of(path) == BASE_INITRAMFS
    # Without an option, as rpm-ostree: packages, overrides and the initramfs.
    run_ok(path, "initramfs", "--enable")
    run_ok(path, "reset")
    d = deployments_json(path)[0]
    assert d["checksum"] == debian_sysroot.base_checksum and d["packages"] == []
    assert not d["regenerate-initramfs"]
    fsck(path)


def test_bad_requests_are_refused_and_change_nothing(debian_sysroot: DebianSysroot) -> None:
    path = debian_sysroot.path
    for args, message in (
        (["--disable"], "initramfs regeneration is not enabled"),
        (["--arg=-v"], "--arg needs --enable"),
        (["--enable", "--disable"], "cannot be used together"),
        (["--enable", "--arg=a;b"], 'invalid --arg "a;b"'),
        (["--enable", "--reboot"], "--reboot needs the booted system"),
    ):
        proc = apt_ostree(path, "initramfs", *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert len(deployments_json(path)) == 1


BOOT_REPO = CACHEDIR / "boot-repo"


def lsinitrd(image: Path) -> str:
    return subprocess.run(
        ["lsinitrd", str(image)], capture_output=True, text=True, check=True
    ).stdout


def kernel_modules(listing: str) -> int:
    return sum(1 for line in listing.splitlines() if ".ko" in line.rsplit("/", 1)[-1])


# The trixie machine's tree, as tests/e2e/test_boot.py composes it.
BOOT_REF = "test/boot/trixie/x86_64"


@pytest.mark.slow
def test_real_dracut_builds_the_initramfs_with_the_arguments(tmp_path: Path) -> None:
    """The VM tests' bootable tree (real kernel, dracut, ostree-boot; composed and
    cached by tests/e2e/test_boot.py, not here): dracut runs in the sandbox with
    `--include`, and the file is in the new initramfs."""
    if not (BOOT_REPO / "config").exists():
        pytest.skip(f"no cached bootable tree in {BOOT_REPO} (tests/e2e/test_boot.py makes it)")
    # Read without the cache's lock: a compose beside this test only adds objects
    # and moves the ref at its end; the commit read here stays whole.
    checksum = ostree_repo.resolve_ref(ostree_repo.open_repo(BOOT_REPO), BOOT_REF)
    if checksum is None:
        pytest.skip(f"no {BOOT_REF} in {BOOT_REPO} (tests/e2e/test_boot.py makes it)")
    with mounted_tmpfs(tmp_path / "tmpfs", "4g") as mnt:
        path = mnt / "sysroot"
        make_sysroot(
            SysrootRequest(path=path, repo=BOOT_REPO, ref=BOOT_REF, revision=checksum,
                           osname="debian", kargs=[], remote="origin",
                           remote_url=f"file://{BOOT_REPO}", gpg_verify=False),
            NullReporter(),
        )  # fmt: skip
        [kver] = [p.name for p in (deployment_dir(path) / "usr/lib/modules").iterdir()]
        base = initramfs_of(path, kver)
        # `--modules base` (plus the ostree module apt-ostree adds) keeps dracut to
        # seconds: no kernel drivers; `--include` is the argument whose effect is checked.
        run_ok(path, "initramfs", "--enable", "--arg=--modules", "--arg=base",
               "--arg=--include", "--arg=/usr/lib/os-release",
               "--arg=/etc/apt-ostree-included")  # fmt: skip
        image = deployment_dir(path) / f"usr/lib/modules/{kver}/initramfs.img"
        assert image.read_bytes() != base
        listing = lsinitrd(image)
        assert "etc/apt-ostree-included\n" in listing
        # --modules base: a few drivers (systemd's), not the image's every one. Counted,
        # not sized: the libraries dracut takes along follow the image's packages.
        (tmp_path / "base.img").write_bytes(base)
        assert 0 < kernel_modules(listing) * 10 < kernel_modules(lsinitrd(tmp_path / "base.img"))
        run_ok(path, "initramfs", "--disable")
        assert deployments_json(path)[0]["checksum"] == checksum
        assert initramfs_of(path, kver) == base
        fsck(path)
