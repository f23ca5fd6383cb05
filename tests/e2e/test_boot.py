"""A composed image boots on real firmware and the administrator's cycle works on it (slow).

The example tree (examples/minimal.yaml: a small Debian with apt-ostree's own
.deb) with root logged in on the serial console is made into a disk image
with `compose disk-image` and booted under qemu TCG with SeaBIOS (GRUB from the
BIOS boot partition) and with OVMF (GRUB from the ESP). A second, read-only
virtual disk carries what a network would: a signed APT repository with one
test package plus the real openssh-server and what it needs beyond the image
(fetched from the host's APT sources), and an OSTree repository with a newer
commit of the image's ref (the image's origin remote `updates` points at it).
Each firmware gets its own image (BIOS: ext4 root, UEFI: xfs root) and one VM
on a copy-on-write overlay of it; the tests of a firmware run in file order on
that VM, as an administrator would: status; apt-ostreed over the system bus;
install (with openssh-server: its host keys are made at boot, never
committed, and kept by the upgrade) and reboot; kargs and reboot; edit /etc,
upgrade and reboot; rollback and reboot. BIOS also gets a power cut between
upgrade and reboot and a staged deployment whose finalization fails (a full
/boot). Times are printed (run with -s).
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
from apt_ostree.debian.resolve import fetch_packages, resolve_layer
from apt_ostree.debian.sources import host_sources
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter
from tests.fixtures.aptrepo import DebSpec, build_deb, build_repo, make_signing_key
from tests.fixtures.sysroot import apt_ostree
from tests.fixtures.vm import VM

pytestmark = pytest.mark.slow

TOP = Path(__file__).resolve().parents[2]
CACHEDIR = Path(os.environ.get("APT_OSTREE_TEST_CACHEDIR", "/var/tmp/apt-ostree-test-cache"))
BOOT_REPO = CACHEDIR / "boot-repo"
REF = "test/boot/x86_64"
# The example tree (apt-ostree included) and root logged in on the serial console.
TREEFILE = """\
include: {minimal}
ref: {ref}
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
BUS = "org.aptostree.dev"
BUS_SYSROOT = "/org/aptostree/dev/Sysroot"
# Where the guest mounts the second disk; the image's remote and the APT source point here.
UPDATES = "/run/updates"
REMOTE = "updates"
PACKAGE = "vm-hello"
# A real package whose postinst makes machine secrets (SSH host keys).
SSH = "openssh-server"
LAYERED = sorted([PACKAGE, SSH])
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
LS_ETC_SSH = "ostree --repo=/ostree/repo ls -R {} /usr/etc/ssh"
# What the update commit adds on top of the image's commit.
UPDATE_MARKER = "usr/share/apt-ostree-test/update"
# Both root filesystems of `compose disk-image --root-fs` boot: one per firmware.
ROOT_FS = {"bios": "ext4", "uefi": "xfs"}
ETC_EDIT = "edited by the administrator before the upgrade"
# The layered package's postinst writes into /usr, as real ones do.
POSTINST = """#!/bin/sh
set -e
mkdir -p /usr/share/vm-hello
echo configured > /usr/share/vm-hello/postinst-ran
"""


@dataclass
class Image:
    path: Path
    checksum: str


@dataclass
class Updates:
    disk: Path
    checksum: str  # the newer commit of REF
    version: str


# The host key fingerprint of each firmware's machine after its first boot with sshd.
HOST_KEYS: dict[str, str] = {}


def timed(label: str, start: float) -> None:
    print(f"\n[boot] {label}: {time.monotonic() - start:.1f}s")


@pytest.fixture(scope="session")
def boot_commit(apt_ostree_deb: Path) -> str:
    """The bootable commit in the persistent cache (recomposed when the .deb changes)."""
    CACHEDIR.mkdir(parents=True, exist_ok=True)
    treefile = CACHEDIR / "boot.yaml"
    with (CACHEDIR / "boot-repo.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        treefile.write_text(TREEFILE.format(minimal=TOP / "examples/minimal.yaml", ref=REF))
        start = time.monotonic()
        proc = apt_ostree(None, "compose", "tree", treefile, "--repo", BOOT_REPO,
                          "--cachedir", CACHEDIR)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        timed("compose tree", start)
    checksum = ostree_repo.resolve_ref(ostree_repo.open_repo(BOOT_REPO), REF)
    assert checksum is not None
    return checksum


def _update_commit(repo: OSTree.Repo, base: str, workdir: Path) -> tuple[str, str]:
    """A newer commit of REF: the base's tree and metadata, one more file, a new version."""
    _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, base)
    packed = commit.get_child_value(0)
    metadata: dict[str, Any] = {}
    for i in range(packed.n_children()):
        entry = packed.get_child_value(i)
        metadata[entry.get_child_value(0).get_string()] = entry.get_child_value(1).get_variant()
    version = metadata["version"].get_string() + ".1"
    metadata["version"] = GLib.Variant("s", version)
    upper = workdir / "update-upper"
    marker = upper / UPDATE_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text(f"{version}\n")
    checksum = ostree_repo.commit_layer(repo, base, upper, [], subject=f"update to {version}",
                                        metadata=metadata)  # fmt: skip
    repo.set_ref_immediate(None, REF, checksum, None)
    ostree_repo.regenerate_summary(repo)
    return checksum, version


def _debs_beyond_the_image(boot_commit: str, packages: list[str], work: Path) -> list[Path]:
    """`packages` and what they need that the image lacks, from the host's APT sources."""
    status = work / "image-dpkg-status"
    status.write_text(subprocess.run(
        ["ostree", f"--repo={BOOT_REPO}", "cat", boot_commit, "/usr/share/dpkg/database/status"],
        capture_output=True, text=True, check=True,
    ).stdout)  # fmt: skip
    plan = resolve_layer(host_sources(), status_file=status, arch="amd64",
                         statedir=work / "apt-state", install=packages)  # fmt: skip
    return fetch_packages(plan, cachedir=CACHEDIR / "debs")


@pytest.fixture(scope="session")
def updates(boot_commit: str, tmp_path_factory: pytest.TempPathFactory) -> Updates:
    """The second disk: an APT repository (apt/) and an OSTree repository (ostree/)."""
    work = tmp_path_factory.mktemp("updates")
    top = work / "disk"
    start = time.monotonic()
    key = make_signing_key(work)
    spec = DebSpec(
        PACKAGE,
        files={
            f"usr/bin/{PACKAGE}": "#!/bin/sh\necho hello from a layered package\n",
            f"etc/{PACKAGE}.conf": "greeting=hello\n",
        },
        modes={f"usr/bin/{PACKAGE}": 0o755},
        scripts={"postinst": POSTINST},
    )
    real = _debs_beyond_the_image(boot_commit, [SSH], work)
    build_repo([build_deb(spec, work), *real], top / "apt", key)
    (top / "apt/keyring.gpg").write_bytes(key.keyring.read_bytes())
    subprocess.run(["ostree", f"--repo={top / 'ostree'}", "init", "--mode=archive"], check=True)
    subprocess.run(["ostree", f"--repo={top / 'ostree'}", "pull-local", BOOT_REPO, REF],
                   check=True, capture_output=True)  # fmt: skip
    repo = ostree_repo.open_repo(top / "ostree")
    checksum, version = _update_commit(repo, boot_commit, work)
    disk = work / "updates.raw"
    subprocess.run(["mkfs.ext4", "-q", "-L", "updates", "-d", top, disk, "1G"], check=True)
    timed("updates disk (APT repo + OSTree repo)", start)
    return Updates(disk, checksum, version)


@pytest.fixture(scope="module", params=["bios", "uefi"])
def firmware(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def image(firmware: str, boot_commit: str, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The disk image of one firmware; the UEFI one has an xfs root (`--root-fs xfs`)."""
    path = tmp_path_factory.mktemp(f"disk-{firmware}") / "disk.raw"
    start = time.monotonic()
    built = build_disk_image(
        DiskImageRequest(output=path, repo=BOOT_REPO, ref=REF, firmware=firmware,
                         root_fs=ROOT_FS[firmware], kargs=["console=ttyS0"], remote=REMOTE,
                         remote_url=f"file://{UPDATES}/ostree", gpg_verify=False),
        NullReporter(),
    )  # fmt: skip
    timed(f"compose disk-image (4G, {firmware}, {ROOT_FS[firmware]} root)", start)
    assert built.checksum == boot_commit
    return Image(path, built.checksum)


@pytest.fixture(scope="module")
def vm(firmware: str, image: Image, updates: Updates,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:  # fmt: skip
    work = tmp_path_factory.mktemp(f"vm-{firmware}")
    overlay = work / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image.path, "-F", "raw",
                    overlay], check=True)  # fmt: skip
    machine = VM(
        overlay,
        firmware=firmware,
        log=work / "serial.log",
        extra_disks=[updates.disk],
        cold_reboot=firmware == "uefi",
    )  # see VM.cold_reboot and docs/boot.md
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
    out = vm.run(command, timeout=900)
    timed(f"{vm.firmware}: {label}", start)
    return out


def reboot(vm: VM) -> None:
    boot = vm.reboot()
    print(f"\n[boot] {vm.firmware}: reboot to root shell in {boot:.1f}s")


def mount_updates(vm: VM) -> None:
    mount = f"mkdir -p {UPDATES} && mount -o ro /dev/vdb {UPDATES}"
    vm.run(f"mountpoint -q {UPDATES} || {{ {mount}; }}")


def test_boots_to_multi_user(vm: VM) -> None:
    assert vm.run("systemctl is-active multi-user.target") == "active"
    assert vm.run("findmnt -n -o FSTYPE /sysroot") == ROOT_FS[vm.firmware]
    print(f"\n[boot] {vm.firmware}: systemd-analyze: {vm.run('systemd-analyze time', check=False)}")


def test_status_shows_one_booted_deployment_of_the_commit(vm: VM, image: Image) -> None:
    start = time.monotonic()
    deployments = status(vm)
    timed(f"{vm.firmware}: apt-ostree status --json", start)
    assert len(deployments) == 1
    assert booted(deployments)["checksum"] == image.checksum
    assert booted(deployments)["origin"] == f"{REMOTE}:{REF}"


def test_run_ostree_booted_exists(vm: VM) -> None:
    assert vm.status("test -f /run/ostree-booted") == 0


def test_usr_is_read_only(vm: VM) -> None:
    assert vm.status("touch /usr/apt-ostree-test") != 0
    assert "ro" in vm.run("findmnt -n -o OPTIONS /usr").split(",")


def test_boot_menu_is_the_generated_one(vm: VM) -> None:
    assert vm.run("readlink /boot/grub/grub.cfg") == "../loader/grub.cfg"
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "1"


def test_tools_drive_apt_ostreed_over_the_system_bus(vm: VM) -> None:
    # The first call activates the daemon (D-Bus activation, apt-ostreed.service).
    reply = vm.run(f"busctl --json=short call {BUS} {BUS_SYSROOT} {BUS}.Sysroot GetStatus")
    via_bus = json.loads(json.loads(reply)["data"][0])
    assert via_bus["deployments"] == status(vm)
    assert vm.run("systemctl is-active apt-ostreed.service") == "active"
    # A transaction through the client library, as a tool would: stage, then drop it.
    client = "from apt_ostree.client.dbus import DaemonClient; c = DaemonClient(); c"
    step(vm, "KernelArgs over D-Bus", f"python3 -c '{client}.kernel_args(append=[\"via=dbus\"])'")
    staged = status(vm)[0]
    assert staged["staged"] and "via=dbus" in staged["kernel-arguments"]
    vm.run(f"python3 -c '{client}.cleanup([\"pending\"])'")
    assert not any(d["staged"] for d in status(vm))
    # Changes are for root only (polkit is not there yet); reading is for everyone.
    denied = vm.run(f"setpriv --reuid=nobody --regid=nogroup --clear-groups python3 -c '{client}"
                    f".cleanup([\"pending\"])'", check=False)  # fmt: skip
    assert "only root may" in denied


def test_install_from_the_second_disk_is_layered_after_reboot(vm: VM, image: Image) -> None:
    mount_updates(vm)
    # The image's sources point at the archive it was composed from; this machine
    # has no network, only the second disk.
    vm.run("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*")
    source = ["Types: deb", f"URIs: file:{UPDATES}/apt/", "Suites: fixture",
              "Components: main", f"Signed-By: {UPDATES}/apt/keyring.gpg"]  # fmt: skip
    lines = " ".join(f"'{line}'" for line in source)
    vm.run(f"printf '%s\\n' {lines} > /etc/apt/sources.list.d/updates.sources")
    install = f"apt-ostree install {' '.join(LAYERED)}"
    step(vm, install, install)
    deployments = status(vm)
    assert deployments[0]["staged"] and deployments[0]["requested-packages"] == LAYERED
    # The host keys that the postinst made are not in the commit: the machine makes its own.
    assert "ssh_host_" not in vm.run(LS_ETC_SSH.format(deployments[0]["checksum"]))
    assert vm.status(f"command -v {PACKAGE}") != 0
    reboot(vm)
    deployments = status(vm)
    now = booted(deployments)
    assert deployments[0]["booted"]
    assert now["packages"] == LAYERED
    assert now["base-checksum"] == image.checksum
    assert vm.run(PACKAGE) == "hello from a layered package"
    assert vm.run("systemctl is-active ssh.service") == "active"
    HOST_KEYS[vm.firmware] = vm.run(f"ssh-keygen -l -f {HOST_KEY}.pub")
    assert vm.run(f"dpkg-query -W -f='${{Status}}' {PACKAGE}") == "install ok installed"
    assert vm.run("cat /usr/share/vm-hello/postinst-ran") == "configured"
    assert vm.run(f"cat /etc/{PACKAGE}.conf") == "greeting=hello"


def test_kargs_append_is_on_the_kernel_command_line_after_reboot(vm: VM) -> None:
    step(vm, "apt-ostree kargs --append=foo=bar", "apt-ostree kargs --append=foo=bar")
    assert "foo=bar" not in vm.run("cat /proc/cmdline").split()
    reboot(vm)
    assert "foo=bar" in vm.run("cat /proc/cmdline").split()
    deployments = status(vm)
    assert len(deployments) == 2
    assert deployments[0]["booted"]
    assert booted(deployments)["packages"] == LAYERED
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "2"


def test_power_cut_between_upgrade_and_reboot_boots_the_old_deployment(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("the power cut does not depend on the firmware: run once, on BIOS")
    before = status(vm)
    mount_updates(vm)
    step(vm, "apt-ostree upgrade (then power cut)", "apt-ostree upgrade")
    assert status(vm)[0]["staged"]
    vm.power_cut()
    boot = vm.start()
    print(f"\n[boot] {vm.firmware}: power-on after the power cut to root shell in {boot:.1f}s")
    after = status(vm)
    assert [d["id"] for d in after] == [d["id"] for d in before]
    assert booted(after)["id"] == booted(before)["id"]
    assert not any(d["staged"] for d in after)
    assert vm.status(f"test -e /{UPDATE_MARKER}") != 0


def test_upgrade_boots_the_new_version_and_keeps_the_etc_edit(vm: VM, updates: Updates) -> None:
    before = booted(status(vm))
    vm.run(f"echo '{ETC_EDIT}' >> /etc/motd && sync")
    mount_updates(vm)
    step(vm, "apt-ostree upgrade", "apt-ostree upgrade")
    staged = status(vm)[0]
    assert staged["staged"] and staged["version"] == updates.version
    reboot(vm)
    deployments = status(vm)
    now = booted(deployments)
    assert deployments[0]["booted"] and now["id"] != before["id"]
    assert now["version"] == updates.version
    assert now["base-checksum"] == updates.checksum
    assert now["packages"] == LAYERED
    assert vm.run(f"cat /{UPDATE_MARKER}") == updates.version
    assert vm.run("tail -n 1 /etc/motd") == ETC_EDIT
    assert vm.run(PACKAGE) == "hello from a layered package"
    # The machine's SSH identity survives the upgrade (the postinst ran again while
    # the layer was rebuilt on the new base).
    assert vm.run("systemctl is-active ssh.service") == "active"
    assert vm.run(f"ssh-keygen -l -f {HOST_KEY}.pub") == HOST_KEYS[vm.firmware]
    assert "ssh_host_" not in vm.run(LS_ETC_SSH.format(now["checksum"]))
    assert "foo=bar" in vm.run("cat /proc/cmdline").split()


def test_rollback_boots_the_previous_deployment(vm: VM, image: Image) -> None:
    deployments = status(vm)
    before, previous = deployments[0], deployments[1]
    assert before["booted"]
    step(vm, "apt-ostree rollback", "apt-ostree rollback")
    reboot(vm)
    deployments = status(vm)
    now = booted(deployments)
    assert now["id"] == previous["id"] and deployments[0]["booted"]
    assert now["base-checksum"] == image.checksum
    assert vm.status(f"test -e /{UPDATE_MARKER}") != 0
    # /etc is carried forward from the deployment that was booted.
    assert vm.run("tail -n 1 /etc/motd") == ETC_EDIT


def test_failed_finalization_is_reported_by_status_after_reboot(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("finalization does not depend on the firmware: run once, on BIOS")
    before = booted(status(vm))
    kargs = "apt-ostree kargs --append=never=finalized"
    step(vm, kargs, kargs)
    assert status(vm)[0]["staged"]
    # /boot fills up after staging: `ostree admin finalize-staged` fails at shutdown.
    vm.run("dd if=/dev/zero of=/boot/filler bs=1M status=none || true; sync")
    reboot(vm)
    assert "never=finalized" not in vm.run("cat /proc/cmdline").split()
    full = json.loads(vm.run("apt-ostree status --json"))
    assert booted(full["deployments"])["id"] == before["id"]
    assert not any(d["staged"] for d in full["deployments"])
    failure = full["finalize-failure"]
    assert failure is not None and failure["result"] != "success"
    print(f"\n[boot] {vm.firmware}: recorded finalize failure: {failure}")
    text = vm.run("apt-ostree status")
    assert "Warning: failed to finalize previous deployment" in text
    vm.run("rm -f /boot/filler")
