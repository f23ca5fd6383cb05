"""A composed image boots on real firmware and apt-ostree works on the running machine (slow).

One disk image (`compose disk-image --firmware both`) of a small Debian with
apt-ostree's own .deb composed in boots under qemu TCG with SeaBIOS (GRUB
from the BIOS boot partition) and with OVMF (GRUB from the ESP). Each firmware
gets its own copy-on-write overlay of the image and one VM; the tests of a
firmware run in file order on that VM, as an administrator would: status,
kargs and reboot, rollback and reboot. Times are printed (run with -s).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.compose.diskimage import DiskImageRequest, build_disk_image
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter
from tests.fixtures.sysroot import apt_ostree
from tests.fixtures.vm import VM

pytestmark = pytest.mark.slow

TOP = Path(__file__).resolve().parents[2]
CACHEDIR = Path(os.environ.get("APT_OSTREE_TEST_CACHEDIR", "/var/tmp/apt-ostree-test-cache"))
BOOT_REPO = CACHEDIR / "boot-repo"
REF = "test/boot/x86_64"
# The example tree, apt-ostree itself, and root logged in on the serial console.
TREEFILE = """\
include: {minimal}
ref: {ref}
local-packages:
  - {deb}
postprocess:
  - |
    #!/bin/sh
    set -e
    dir=/usr/lib/systemd/system/serial-getty@ttyS0.service.d
    mkdir -p $dir
    printf '%s\\n' '[Service]' 'ExecStart=' \\
      'ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM' \\
      > $dir/autologin.conf
"""


@dataclass
class Image:
    path: Path
    checksum: str


def timed(label: str, start: float) -> None:
    print(f"\n[boot] {label}: {time.monotonic() - start:.1f}s")


@pytest.fixture(scope="session")
def apt_ostree_deb() -> Path:
    """apt-ostree's .deb, built from this checkout as `make deb` does."""
    start = time.monotonic()
    proc = subprocess.run(["make", "-C", TOP, "deb"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = subprocess.run(["dpkg-parsechangelog", "-S", "Version"], cwd=TOP,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    timed("make deb", start)
    return TOP / f"build/deb/apt-ostree_{version}_all.deb"


@pytest.fixture(scope="session")
def boot_commit(apt_ostree_deb: Path) -> str:
    """The bootable commit in the persistent cache (recomposed when the .deb changes)."""
    CACHEDIR.mkdir(parents=True, exist_ok=True)
    treefile = CACHEDIR / "boot.yaml"
    with (CACHEDIR / "boot-repo.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        treefile.write_text(
            TREEFILE.format(minimal=TOP / "examples/minimal.yaml", ref=REF, deb=apt_ostree_deb)
        )
        start = time.monotonic()
        proc = apt_ostree(None, "compose", "tree", treefile, "--repo", BOOT_REPO,
                          "--cachedir", CACHEDIR)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        timed("compose tree", start)
    checksum = ostree_repo.resolve_ref(ostree_repo.open_repo(BOOT_REPO), REF)
    assert checksum is not None
    return checksum


@pytest.fixture(scope="session")
def image(boot_commit: str, tmp_path_factory: pytest.TempPathFactory) -> Image:
    path = tmp_path_factory.mktemp("disk") / "disk.raw"
    start = time.monotonic()
    built = build_disk_image(
        DiskImageRequest(output=path, repo=BOOT_REPO, ref=REF, firmware="both",
                         kargs=["console=ttyS0"]),
        NullReporter(),
    )  # fmt: skip
    timed("compose disk-image (4G, both)", start)
    assert built.checksum == boot_commit
    return Image(path, built.checksum)


@pytest.fixture(scope="module", params=["bios", "uefi"])
def vm(request: pytest.FixtureRequest, image: Image, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[VM]:  # fmt: skip
    firmware = request.param
    work = tmp_path_factory.mktemp(f"vm-{firmware}")
    overlay = work / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image.path, "-F", "raw",
                    overlay], check=True)  # fmt: skip
    machine = VM(overlay, firmware=firmware, log=work / "serial.log")
    print(f"\n[boot] {firmware} serial log: {machine.log}")
    try:
        boot = machine.start()
        print(f"\n[boot] {firmware}: power-on to root shell (multi-user) in {boot:.1f}s")
        yield machine
    finally:
        machine.stop()


def status(vm: VM) -> list[dict[str, Any]]:
    deployments: list[dict[str, Any]] = json.loads(vm.run("apt-ostree status --json"))[
        "deployments"
    ]
    return deployments


def booted(deployments: list[dict[str, Any]]) -> dict[str, Any]:
    (entry,) = [d for d in deployments if d["booted"]]
    return entry


def step(vm: VM, label: str, command: str) -> str:
    start = time.monotonic()
    out = vm.run(command)
    timed(f"{vm.firmware}: {label}", start)
    return out


def test_boots_to_multi_user(vm: VM) -> None:
    assert vm.run("systemctl is-active multi-user.target") == "active"
    print(f"\n[boot] {vm.firmware}: systemd-analyze: {vm.run('systemd-analyze time', check=False)}")


def test_status_shows_one_booted_deployment_of_the_commit(vm: VM, image: Image) -> None:
    start = time.monotonic()
    deployments = status(vm)
    timed(f"{vm.firmware}: apt-ostree status --json", start)
    assert len(deployments) == 1
    assert booted(deployments)["checksum"] == image.checksum


def test_run_ostree_booted_exists(vm: VM) -> None:
    assert vm.status("test -f /run/ostree-booted") == 0


def test_usr_is_read_only(vm: VM) -> None:
    assert vm.status("touch /usr/apt-ostree-test") != 0
    assert "ro" in vm.run("findmnt -n -o OPTIONS /usr").split(",")


def test_boot_menu_is_the_generated_one(vm: VM) -> None:
    assert vm.run("readlink /boot/grub/grub.cfg") == "../loader/grub.cfg"
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "1"


def test_kargs_append_is_on_the_kernel_command_line_after_reboot(vm: VM) -> None:
    step(vm, "apt-ostree kargs --append=foo=bar", "apt-ostree kargs --append=foo=bar")
    assert "foo=bar" not in vm.run("cat /proc/cmdline").split()
    boot = vm.reboot()
    print(f"\n[boot] {vm.firmware}: reboot to root shell in {boot:.1f}s")
    assert "foo=bar" in vm.run("cat /proc/cmdline").split()
    deployments = status(vm)
    assert len(deployments) == 2
    assert deployments[0]["booted"]
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "2"


def test_rollback_boots_the_previous_deployment(vm: VM) -> None:
    if vm.firmware == "uefi":
        # Known problem (docs/boot.md): in one full CI run, GRUB under OVMF+TCG cleared
        # the screen after the rollback reboot and never went on (600 s); it passed in
        # an earlier run. Kept out of the suite until understood; BIOS covers rollback.
        pytest.skip("UEFI reboot after rollback: GRUB hang under OVMF/TCG, see docs/boot.md")
    before = booted(status(vm))
    step(vm, "apt-ostree rollback", "apt-ostree rollback")
    boot = vm.reboot()
    print(f"\n[boot] {vm.firmware}: reboot to root shell in {boot:.1f}s")
    assert "foo=bar" not in vm.run("cat /proc/cmdline").split()
    deployments = status(vm)
    now = booted(deployments)
    assert now["id"] != before["id"]
    assert deployments[0]["booted"]
