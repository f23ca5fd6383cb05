"""Composed images boot on real firmware and the administrator's cycle works on them (slow).

One machine per Debian release, each on one firmware so that both releases and
both firmwares are covered by two boots: Debian 13 "trixie" (examples/cockpit.yaml:
the default example, debian-13.yaml, with Cockpit) on UEFI (OVMF, GRUB from the
ESP, xfs root) and Debian 12 "bookworm" (examples/debian-12.yaml) on BIOS (SeaBIOS, GRUB from the
BIOS boot partition, ext4 root). The example tree (a small Debian with
apt-ostree's own .deb, from the host's mirror for the treefile's suite) with
root logged in on the serial console is made into a disk image with
`compose disk-image` and booted under qemu TCG. A second, read-only virtual
disk carries what a network would: a signed APT repository with one test
package plus the release's real openssh-server and what it needs beyond the
image (fetched from the host's mirror), and an OSTree repository with a newer
commit of the image's ref (the image's origin remote `updates` points at it).
The tests of a machine run in file order on one VM (a copy-on-write overlay of
its image), as an administrator would: status; apt-ostreed over the system
bus; install (with openssh-server: its host keys are made at boot, never
committed, and kept by the upgrade) and reboot; kargs and reboot; a power cut
between upgrade and reboot; edit /etc, upgrade (UEFI: with a tracked /etc file
and an initramfs regenerated with a dracut argument staged onto it) and reboot;
rollback and reboot.
Every command goes through apt-ostreed on the system bus, authorized by the
real polkitd. The bookworm machine also gets: a user that a polkit rules file
lets layer packages, and one that is refused; an install interrupted with
Ctrl-C and an upgrade cancelled from a second session, which leave the
deployments as they were; the upgrade staged by apt-ostreed-automatic.timer
(AutomaticUpdatePolicy=stage) instead of by hand; and a staged deployment whose
finalization fails (a full /boot). The trixie machine also gets the health-checked
boot: its upgrade boots on probation and ends it; a failing required check and a
root that is not found each reboot and fall back by themselves (docs/health.md).
And its Cockpit page, reached from the host's headless Chromium through qemu's
port forwarding and Cockpit's own login form, shows the booted deployment, then a
staged one and that a reboot is needed (docs/cockpit.md). Times are
printed (run with -s).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.compose.diskimage import DiskImageRequest, build_disk_image
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import NullReporter
from tests.fixtures.aptrepo import DebSpec, build_deb, build_repo, make_signing_key
from tests.fixtures.bootsteps import (
    UPDATES,
    boot_judged,
    booted,
    booted_initrds,
    mount_updates,
    reboot,
    run_until,
    stage_by_the_automatic_timer,
    status,
    step,
    timed,
    use_updates_apt_source,
)
from tests.fixtures.bootupdates import (
    MOVED_INDEX,
    NEW_USER,
    UPDATE_MARKER,
    debs_beyond_the_image,
    kernel_of_release,
    new_layers,
    oci_layout,
    update_commit,
)
from tests.fixtures.cockpit import CockpitPage, free_port, log_in
from tests.fixtures.sysroot import apt_ostree
from tests.fixtures.vm import VM

pytestmark = pytest.mark.slow

TOP = Path(__file__).resolve().parents[2]
CACHEDIR = Path(os.environ.get("APT_OSTREE_TEST_CACHEDIR", "/var/tmp/apt-ostree-test-cache"))
BOOT_REPO = CACHEDIR / "boot-repo"
# The example tree (apt-ostree included) and root logged in on the serial console.
TREEFILE = """\
include: {example}
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
# Under TCG on a loaded machine udev's coldplug in the real root can outlast
# systemd's 90 s wait for the /boot device (seen once with trixie: emergency mode).
KARGS = ["console=ttyS0", "systemd.default_device_timeout_sec=600"]
# Opt-in: layer trixie's kernel on bookworm and boot it (test_a_layered_kernel_...).
LAYERED_KERNEL = os.environ.get("APT_OSTREE_TEST_LAYERED_KERNEL") == "1"
BUS = "org.aptostree.dev"
BUS_SYSROOT = "/org/aptostree/dev/Sysroot"
REMOTE = "updates"
PACKAGE = "vm-hello"
# A real package whose postinst makes machine secrets (SSH host keys).
SSH = "openssh-server"
LAYERED = sorted([PACKAGE, SSH])
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
LS_ETC_SSH = "ostree --repo=/ostree/repo ls -R {} /usr/etc/ssh"
# A polkit rule of the administrator: user `tester` may layer packages by name.
GRANT_RULES = (
    'polkit.addRule(function(action, subject) { if (subject.user == "tester" &&'
    ' action.id == "org.aptostree.dev.install-uninstall-packages") return polkit.Result.YES; });'
)
COCKPIT_PORT = 9090
# Who logs in to Cockpit (which refuses root): an ordinary account; reading is for everyone.
COCKPIT_USER = ("viewer", "a-password-for-the-test")
# An account the administrator adds before the upgrade: /etc/passwd is then the
# machine's own, which ostree's /etc merge keeps.
LOCAL_USER = "alice"
# The second disk's OCI layout: the update commit as an image (tag `stable`) and a
# later build of it (tag `next`) that changes only unpackaged content.
OCI = "oci"
OCI_IMAGE = f"ostree-unverified-image:oci:{UPDATES}/{OCI}:stable"
ETC_EDIT = "edited by the administrator before the upgrade"
# `initramfs-etc` tracks a modprobe option of the machine, `initramfs --enable` builds
# an initramfs with the module (dracut --add-drivers) and the initramfs' systemd loads
# it (rd.modules_load, read in the initramfs only): the module's devices show that
# both reached the initramfs the machine booted.
# Named to sort after systemd's /usr/lib/modprobe.d/systemd.conf, whose
# `options dummy numdummies=0` kmod would otherwise apply last.
INITRAMFS_ETC = "/etc/modprobe.d/zz-apt-ostree-test.conf"
INITRAMFS_ARGS = ["--add-drivers", "dummy"]
INITRAMFS_KARG = "rd.modules_load=dummy"
DUMMIES = ["dummy0", "dummy1", "dummy2"]  # numdummies=3 (systemd's default: 0)
# The layered package's postinst writes into /usr, as real ones do.
POSTINST = """#!/bin/sh
set -e
mkdir -p /usr/share/vm-hello
echo configured > /usr/share/vm-hello/postinst-ran
"""


@dataclass(frozen=True)
class Target:
    """One machine: a release (its example treefile) on one firmware."""

    release: str  # the suite, as the example treefile names it
    example: str
    firmware: str
    root_fs: str  # both root filesystems of `compose disk-image --root-fs` boot
    cockpit: bool = False  # the example has Cockpit (port 9090), reached from the host

    @property
    def ref(self) -> str:
        return f"test/boot/{self.release}/x86_64"

    @property
    def id(self) -> str:
        return f"{self.release}-{self.firmware}"


# In file order: bookworm (which also runs the firmware-independent checks) first.
ALL_TARGETS = [
    Target("bookworm", "examples/debian-12.yaml", "bios", "ext4"),
    Target("trixie", "examples/cockpit.yaml", "uefi", "xfs", cockpit=True),
]
# `make check` boots the machines side by side, one pytest run each
# (APT_OSTREE_TEST_MACHINES="trixie-uefi"); unset, one run boots them in turn.
_WANTED = os.environ.get("APT_OSTREE_TEST_MACHINES", "").split()
TARGETS = [t for t in ALL_TARGETS if not _WANTED or t.id in _WANTED]


@dataclass
class Image:
    path: Path
    checksum: str


@dataclass
class Updates:
    disk: Path
    checksum: str  # the newer commit of the image's ref
    version: str
    layout: Path | None  # the OCI layout on the disk, as the host wrote it


# The host key fingerprint of each firmware's machine after its first boot with sshd.
HOST_KEYS: dict[str, str] = {}


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: t.id)
def target(request: pytest.FixtureRequest) -> Target:
    return request.param


@pytest.fixture(scope="module")
def firmware(target: Target) -> str:
    return target.firmware


@pytest.fixture(scope="module")
def boot_commit(target: Target, apt_ostree_deb: Path) -> str:
    """The release's bootable commit in the persistent cache (recomposed when its inputs,
    the .deb included, change: the compose's own input hash)."""
    CACHEDIR.mkdir(parents=True, exist_ok=True)
    treefile = CACHEDIR / f"boot-{target.release}.yaml"
    with (CACHEDIR / "boot-repo.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        treefile.write_text(TREEFILE.format(example=TOP / target.example, ref=target.ref))
        start = time.monotonic()
        proc = apt_ostree(None, "compose", "tree", treefile, "--repo", BOOT_REPO,
                          "--cachedir", CACHEDIR)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        timed(f"compose tree ({target.release})", start)
    checksum = ostree_repo.resolve_ref(ostree_repo.open_repo(BOOT_REPO), target.ref)
    assert checksum is not None
    return checksum


@pytest.fixture(scope="module")
def updates(target: Target, boot_commit: str, tmp_path_factory: pytest.TempPathFactory) -> Updates:
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
    real = debs_beyond_the_image(BOOT_REPO, boot_commit, target.release, [SSH], work, CACHEDIR)
    if LAYERED_KERNEL and target.release == "bookworm":
        (work / "trixie").mkdir()
        real.append(kernel_of_release(BOOT_REPO, boot_commit, "trixie", work / "trixie", CACHEDIR))
    build_repo([build_deb(spec, work), *real], top / "apt", key)
    (top / "apt/keyring.gpg").write_bytes(key.keyring.read_bytes())
    subprocess.run(["ostree", f"--repo={top / 'ostree'}", "init", "--mode=archive"], check=True)
    subprocess.run(["ostree", f"--repo={top / 'ostree'}", "pull-local", BOOT_REPO, target.ref],
                   check=True, capture_output=True)  # fmt: skip
    repo = ostree_repo.open_repo(top / "ostree")
    checksum, version = update_commit(repo, target.ref, boot_commit, work)
    layout = None
    if target.firmware == "uefi":  # where the OCI test runs (see there)
        layout = oci_layout(repo, top / "ostree", target.ref, checksum, work, top / OCI)
    disk = work / "updates.raw"
    subprocess.run(["mkfs.ext4", "-q", "-L", "updates", "-d", top, disk, "2G"], check=True)
    timed("updates disk (APT repo, OSTree repo, OCI layout)", start)
    return Updates(disk, checksum, version, layout)


@pytest.fixture(scope="module")
def image(target: Target, boot_commit: str, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The disk image of one machine (its firmware and root filesystem)."""
    firmware = target.firmware
    path = tmp_path_factory.mktemp(f"disk-{target.release}-{firmware}") / "disk.raw"
    start = time.monotonic()
    built = build_disk_image(
        DiskImageRequest(output=path, repo=BOOT_REPO, ref=target.ref, firmware=firmware,
                         root_fs=target.root_fs, kargs=KARGS, remote=REMOTE,
                         remote_url=f"file://{UPDATES}/ostree", gpg_verify=False),
        NullReporter(),
    )  # fmt: skip
    timed(f"compose disk-image (4G, {target.release}, {firmware}, {target.root_fs} root)", start)
    assert built.checksum == boot_commit
    return Image(path, built.checksum)


@pytest.fixture(scope="module")
def vm(target: Target, image: Image, updates: Updates,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:  # fmt: skip
    firmware = target.firmware
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
        forwards={free_port(): COCKPIT_PORT} if target.cockpit else None,
    )  # see VM.cold_reboot and docs/boot.md
    print(f"\n[boot] {firmware} serial log: {machine.log}")
    try:
        boot = machine.start()
        print(f"\n[boot] {firmware}: power-on to root shell (multi-user) in {boot:.1f}s")
        yield machine
    finally:
        machine.stop()


def test_boots_to_multi_user(vm: VM, target: Target) -> None:
    assert vm.run("systemctl is-active multi-user.target") == "active"
    assert vm.run("findmnt -n -o FSTYPE /sysroot") == target.root_fs
    assert vm.run(". /etc/os-release && echo $VERSION_CODENAME") == target.release
    print(f"\n[boot] {vm.firmware}: systemd-analyze: {vm.run('systemd-analyze time', check=False)}")


def test_status_shows_one_booted_deployment_of_the_commit(
    vm: VM, image: Image, target: Target
) -> None:
    start = time.monotonic()
    deployments = status(vm)
    timed(f"{vm.firmware}: apt-ostree status --json", start)
    assert len(deployments) == 1
    assert booted(deployments)["checksum"] == image.checksum
    assert booted(deployments)["origin"] == f"{REMOTE}:{target.ref}"


def test_run_ostree_booted_exists(vm: VM) -> None:
    assert vm.status("test -f /run/ostree-booted") == 0


def test_usr_is_read_only(vm: VM) -> None:
    assert vm.status("touch /usr/apt-ostree-test") != 0
    assert "ro" in vm.run("findmnt -n -o OPTIONS /usr").split(",")


def test_boot_menu_is_the_generated_one(vm: VM) -> None:
    assert vm.run("readlink /boot/grub/grub.cfg") == "../loader/grub.cfg"
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "1"


def test_the_cli_drives_apt_ostreed_over_the_system_bus(vm: VM) -> None:
    # The first call activates the daemon (D-Bus activation, apt-ostreed.service).
    reply = vm.run(f"busctl --json=short call {BUS} {BUS_SYSROOT} {BUS}.Sysroot GetStatus")
    via_bus = json.loads(json.loads(reply)["data"][0])
    assert via_bus["deployments"] == status(vm)
    assert vm.run("systemctl is-active apt-ostreed.service") == "active"
    # The CLI is a client: the transaction runs in apt-ostreed (its journal says so).
    step(vm, "apt-ostree kargs (through apt-ostreed)", "apt-ostree kargs --append=via=dbus")
    journal = vm.run("journalctl -b -u apt-ostreed.service -o cat --no-pager")
    assert "KernelArgs of debian by" in journal and "succeeded" in journal
    staged = status(vm)[0]
    assert staged["staged"] and "via=dbus" in staged["kernel-arguments"]
    vm.run("apt-ostree cleanup -p")
    assert not any(d["staged"] for d in status(vm))
    # Reading is for everyone; a change needs polkit's yes, which nobody does not get.
    nobody = "cd / && setpriv --reuid=nobody --regid=nogroup --clear-groups apt-ostree"
    assert json.loads(vm.run(f"{nobody} status --json"))["deployments"] == status(vm)
    denied = vm.run(f"{nobody} cleanup -p", check=False)
    assert "error: not authorized: org.aptostree.dev.cleanup" in denied


def test_cockpit_shows_the_booted_deployment_and_when_a_reboot_is_needed(
    vm: VM, target: Target, browser: Any, cockpit_page: Callable[..., CockpitPage]
) -> None:
    if not target.cockpit:
        pytest.skip("Cockpit is in the trixie machine's image (examples/cockpit.yaml)")
    # The administrator gives the machine its address on qemu's user network (for this
    # boot only) and an account to log in with.
    vm.run(
        "mkdir -p /run/systemd/network && printf '%s\\n' '[Match]' 'Name=en*' '[Network]'"
        " 'Address=10.0.2.15/24' > /run/systemd/network/50-test.network && networkctl reload"
    )
    vm.run("/usr/lib/systemd/systemd-networkd-wait-online --any --timeout=120")
    user, password = COCKPIT_USER
    vm.run(f"useradd --create-home {user} && echo '{user}:{password}' | chpasswd")
    assert vm.forwards is not None
    (port,) = vm.forwards
    url = f"https://127.0.0.1:{port}/cockpit/@localhost/apt-ostree/index.html"
    start = time.monotonic()
    log_in(browser, url, user, password)
    page = cockpit_page(url, timeout=300)
    timed(f"{vm.firmware}: Cockpit login and the page", start)
    deployments = status(vm)
    assert [d["checksum"] for d in page.deployments()] == [d["checksum"] for d in deployments]
    assert "booted" in page.deployments()[[d["booted"] for d in deployments].index(True)]["labels"]
    assert "booted system" in page.text("#system")
    assert not browser.find_elements("id", "reboot-needed")
    page.screenshot("vm-booted")
    # A staged deployment: the page says a reboot is needed (and offers it).
    step(vm, "apt-ostree kargs (for Cockpit)", "apt-ostree kargs --append=cockpit=staged")
    browser.refresh()
    page.wait(lambda d: d.find_elements("id", "reboot-needed"), "the reboot-needed warning", 300)
    staged = status(vm)[0]
    assert page.deployments()[0]["checksum"] == staged["checksum"]
    assert "staged" in page.deployments()[0]["labels"]
    assert "starts at the next boot" in page.text("#reboot-needed")
    page.screenshot("vm-reboot-needed")
    vm.run("apt-ostree cleanup -p")
    assert not any(d["staged"] for d in status(vm))


def test_polkit_lets_a_granted_user_install_and_refuses_the_others(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("polkit does not depend on the firmware: run once, on BIOS")
    use_updates_apt_source(vm)
    before = vm.run("apt-ostree status --json")
    # The administrator grants package layering (by name) to one user.
    vm.run("useradd --no-create-home tester")
    vm.run(f"printf '%s\\n' {GRANT_RULES!r} > /etc/polkit-1/rules.d/50-apt-ostree-test.rules")
    tester = "cd / && setpriv --reuid=tester --regid=tester --init-groups apt-ostree"
    nobody = "cd / && setpriv --reuid=nobody --regid=nogroup --clear-groups apt-ostree"
    refused = vm.run(f"{nobody} install {PACKAGE}", check=False)
    assert refused.splitlines()[-1] == (
        "error: not authorized: org.aptostree.dev.install-uninstall-packages (uid 65534;"
        " authentication required)"
    )
    assert vm.run("apt-ostree status --json") == before
    step(vm, f"apt-ostree install {PACKAGE} (as a user granted by polkit)",
         f"{tester} install {PACKAGE}")  # fmt: skip
    staged = status(vm)[0]
    assert staged["staged"] and staged["requested-packages"] == [PACKAGE]
    # The grant is for package layering only.
    refused = vm.run(f"{tester} cleanup -p", check=False)
    assert "error: not authorized: org.aptostree.dev.cleanup (uid" in refused
    vm.run("apt-ostree cleanup -p && rm /etc/polkit-1/rules.d/50-apt-ostree-test.rules")
    assert vm.run("apt-ostree status --json") == before


def test_install_interrupted_with_ctrl_c_leaves_status_as_it_was(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("cancelling does not depend on the firmware: run once, on BIOS")
    use_updates_apt_source(vm)
    before = vm.run("apt-ostree status --json")
    out = run_until(vm, f"apt-ostree install {PACKAGE}", "Resolving packages", "kill -INT $pid")
    assert out.splitlines()[-1] == "exit=130" and "error: interrupted" in out, out
    assert vm.run("apt-ostree status --json") == before
    # Nothing is left mounted or locked: the next change goes through.
    assert vm.run("findmnt -n -t overlay -o TARGET | grep -c apt-ostree || true") == "0"
    assert "State: idle" in vm.run("apt-ostree status")


def test_install_from_the_second_disk_runs_at_once_with_apply_live_and_after_reboot(
    vm: VM, image: Image
) -> None:
    use_updates_apt_source(vm)
    assert vm.status(f"command -v {PACKAGE}") != 0
    install = f"apt-ostree install -A {' '.join(LAYERED)}"
    out = step(vm, install, install)
    deployments = status(vm)
    assert deployments[0]["staged"] and deployments[0]["requested-packages"] == LAYERED
    # The host keys that the postinst made are not in the commit: the machine makes its own.
    assert "ssh_host_" not in vm.run(LS_ETC_SSH.format(deployments[0]["checksum"]))
    # -A: the new packages run now, from libostree's transient overlay on /usr, which
    # stays read-only for everyone but apt-ostree.
    assert "Successfully updated running filesystem tree." in out, out
    assert vm.run(PACKAGE) == "hello from a layered package"
    assert vm.run("cat /usr/share/vm-hello/postinst-ran") == "configured"
    assert vm.run(f"cat /etc/{PACKAGE}.conf") == "greeting=hello"  # new in /etc: added
    assert vm.run(f"dpkg-query -W -f='${{Status}}' {PACKAGE}") == "install ok installed"
    assert vm.status("touch /usr/share/vm-hello/x") != 0
    live = booted(deployments)
    assert live["unlocked"] == "transient"
    assert live["live-replaced"] == deployments[0]["checksum"]
    assert "live-inprogress" not in live
    text = vm.run("apt-ostree status")
    assert f"LiveCommit: {deployments[0]['checksum']}" in text.replace("  ", "")
    # Applied already: a second apply-live has nothing to do.
    assert vm.run("apt-ostree apply-live").startswith("The running system already is ")
    # --reset takes the running system back to the booted commit, and again forward.
    vm.run("apt-ostree apply-live --reset")
    assert vm.status(f"command -v {PACKAGE}") != 0
    assert vm.status(f"test -e /etc/{PACKAGE}.conf") != 0
    assert "live-replaced" not in booted(status(vm))
    vm.run("apt-ostree apply-live")
    assert vm.run(PACKAGE) == "hello from a layered package"
    reboot(vm)
    deployments = status(vm)
    now = booted(deployments)
    assert deployments[0]["booted"]
    assert now["unlocked"] == "none" and "live-replaced" not in now
    assert now["packages"] == LAYERED
    assert now["base-checksum"] == image.checksum
    assert vm.run(PACKAGE) == "hello from a layered package"
    assert vm.run("systemctl is-active ssh.service") == "active"
    HOST_KEYS[vm.firmware] = vm.run(f"ssh-keygen -l -f {HOST_KEY}.pub")
    assert vm.run(f"dpkg-query -W -f='${{Status}}' {PACKAGE}") == "install ok installed"
    assert vm.run("cat /usr/share/vm-hello/postinst-ran") == "configured"
    assert vm.run(f"cat /etc/{PACKAGE}.conf") == "greeting=hello"


def test_kargs_append_is_on_the_kernel_command_line_after_reboot(vm: VM) -> None:
    # (And a writable /usr until that reboot: `usroverlay`, libostree's development mode.)
    unlocked = "/usr/share/apt-ostree-test/unlocked"
    assert vm.status(f"mkdir -p {os.path.dirname(unlocked)}") != 0
    step(vm, "apt-ostree usroverlay", "apt-ostree usroverlay")
    vm.run(f"mkdir -p {os.path.dirname(unlocked)} && touch {unlocked}")
    assert booted(status(vm))["unlocked"] == "development"
    assert "Unlocked: development" in vm.run("apt-ostree status").replace("  ", "")
    step(vm, "apt-ostree kargs --append=foo=bar", "apt-ostree kargs --append=foo=bar")
    assert "foo=bar" not in vm.run("cat /proc/cmdline").split()
    reboot(vm)
    assert "foo=bar" in vm.run("cat /proc/cmdline").split()
    assert vm.status(f"test -e {unlocked}") != 0
    deployments = status(vm)
    assert booted(deployments)["unlocked"] == "none"
    assert len(deployments) == 2
    assert deployments[0]["booted"]
    assert booted(deployments)["packages"] == LAYERED
    assert vm.run("grep -c ^menuentry /boot/loader/grub.cfg") == "2"


def test_cancel_from_a_second_session_stops_a_running_upgrade(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("cancelling does not depend on the firmware: run once, on BIOS")
    before = status(vm)
    mount_updates(vm)
    # The layer is rebuilt on the new base: cancel while it resolves the packages.
    out = run_until(vm, "apt-ostree upgrade", "Resolving packages",
                    "apt-ostree cancel > /tmp/cancel.log 2>&1")  # fmt: skip
    assert out.splitlines()[-1] == "exit=1" and "error: cancelled" in out, out
    assert vm.run("cat /tmp/cancel.log").startswith("Cancelled: upgrade by pid ")
    after = status(vm)
    assert [d["id"] for d in after] == [d["id"] for d in before]
    assert not any(d["staged"] for d in after)


def test_power_cut_between_upgrade_and_reboot_boots_the_old_deployment(vm: VM) -> None:
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


def test_a_locked_staged_deployment_is_not_booted_by_a_reboot(vm: VM) -> None:
    if vm.firmware != "bios":
        pytest.skip("the finalization lock does not depend on the firmware: run once, on BIOS")
    before = booted(status(vm))
    mount_updates(vm)
    upgrade = "apt-ostree upgrade --lock-finalization"
    step(vm, upgrade, upgrade)
    staged = status(vm)[0]
    assert staged["staged"] and staged["finalization-locked"]
    assert "finalize-deployment" in vm.run("apt-ostree status")
    reboot(vm)
    after = status(vm)
    assert booted(after)["id"] == before["id"] and after[0]["booted"]
    assert not any(d["staged"] for d in after)
    assert json.loads(vm.run("apt-ostree status --json"))["finalize-failure"] is None


def assert_booted_initramfs_has_the_tracked_file_and_the_arg(vm: VM) -> None:
    initramfs, overlay = booted_initrds(vm)
    assert overlay.startswith("/ostree/initramfs-overlays/")
    # The overlay holds the file as the machine has it; the initramfs was built with the arg.
    member = f"cpio -i --quiet --to-stdout {INITRAMFS_ETC[1:]} < /boot{overlay}"
    assert vm.run(member) == vm.run(f"cat {INITRAMFS_ETC}")
    assert "/dummy.ko" in vm.run(f"lsinitrd /boot{initramfs} | grep /dummy.ko || true")
    # ... and the kernel got both: dummy was loaded in the initramfs, with the option.
    net = vm.run("ls /sys/class/net").split()
    assert [n for n in net if n.startswith("dummy")] == DUMMIES, net


def stage_initramfs_changes_onto_the_upgrade(vm: VM) -> None:
    """(UEFI) Onto the staged upgrade, as changes accumulate: a kernel argument, a
    tracked /etc file and an initramfs regenerated with an argument, each staged locked
    like the upgrade. dracut runs once, under TCG (minutes), on the upgrade's tree."""
    kargs = f"apt-ostree kargs --append={INITRAMFS_KARG} --lock-finalization"
    step(vm, kargs, kargs)
    # The machine's own content: its machine id in a comment.
    vm.run(f'echo "# $(cat /etc/machine-id)" > {INITRAMFS_ETC}')
    vm.run(f"echo 'options dummy numdummies={len(DUMMIES)}' >> {INITRAMFS_ETC}")
    track = f"apt-ostree initramfs-etc --track={INITRAMFS_ETC} --lock-finalization"
    assert f"Tracked: {INITRAMFS_ETC}" in step(vm, track, track).splitlines()
    args = " ".join(f"--arg={a}" for a in INITRAMFS_ARGS)
    enable = f"apt-ostree initramfs --enable {args} --lock-finalization"
    step(vm, enable, enable, timeout=1800)  # dracut, under TCG
    staged = status(vm)[0]
    assert staged["staged"] and staged["finalization-locked"] and staged["regenerate-initramfs"]
    assert vm.status("test -e /sys/module/dummy") != 0


def assert_the_initramfs_changes_were_booted(vm: VM, now: dict[str, Any]) -> None:
    assert INITRAMFS_KARG in vm.run("cat /proc/cmdline").split()
    assert now["regenerate-initramfs"] and now["initramfs-args"] == INITRAMFS_ARGS
    assert now["initramfs-etc"] == [INITRAMFS_ETC]
    text = vm.run("apt-ostree status -b")
    assert f"Initramfs: {' '.join(INITRAMFS_ARGS)}" in text
    assert f"InitramfsEtc: {INITRAMFS_ETC}" in text
    assert_booted_initramfs_has_the_tracked_file_and_the_arg(vm)


def test_upgrade_boots_the_new_version_and_keeps_the_etc_edit(vm: VM, updates: Updates) -> None:
    before = booted(status(vm))
    vm.run(f"echo '{ETC_EDIT}' >> /etc/motd && useradd --no-create-home {LOCAL_USER} && sync")
    assert vm.status(f"getent passwd {NEW_USER[0]}") != 0
    mount_updates(vm)
    if vm.firmware == "bios":
        stage_by_the_automatic_timer(vm, updates.checksum)
    else:
        upgrade = "apt-ostree upgrade --lock-finalization"
        step(vm, upgrade, upgrade)
        stage_initramfs_changes_onto_the_upgrade(vm)
    staged = status(vm)[0]
    assert staged["staged"] and staged["version"] == updates.version
    if vm.firmware == "bios":
        reboot(vm)
    else:  # unlocked by finalize-deployment, which reboots
        assert staged["finalization-locked"]
        reboot(vm, f"apt-ostree finalize-deployment {updates.checksum}")
    deployments = status(vm)
    now = booted(deployments)
    assert deployments[0]["booted"] and now["id"] != before["id"]
    assert now["version"] == updates.version
    assert now["base-checksum"] == updates.checksum
    assert now["packages"] == LAYERED
    assert vm.run(f"cat /{UPDATE_MARKER}") == updates.version
    if vm.firmware == "uefi":
        assert_the_initramfs_changes_were_booted(vm, now)
    assert vm.run("tail -n 1 /etc/motd") == ETC_EDIT
    # The machine's /etc/passwd kept its own account and gained the base's new
    # system user (systemd-sysusers at boot, from the new /usr/lib/sysusers.d).
    assert vm.run(f"getent passwd {LOCAL_USER}").startswith(f"{LOCAL_USER}:")
    name, uid = NEW_USER
    assert vm.run(f"getent passwd {name}").split(":")[2:4] == [str(uid), str(uid)]
    assert vm.run(f"getent group {name}").split(":")[2] == str(uid)
    assert vm.run(PACKAGE) == "hello from a layered package"
    # The machine's SSH identity survives the upgrade (the postinst ran again while
    # the layer was rebuilt on the new base).
    assert vm.run("systemctl is-active ssh.service") == "active"
    assert vm.run(f"ssh-keygen -l -f {HOST_KEY}.pub") == HOST_KEYS[vm.firmware]
    assert "ssh_host_" not in vm.run(LS_ETC_SSH.format(now["checksum"]))
    assert "foo=bar" in vm.run("cat /proc/cmdline").split()


# -- Health-checked boot with automatic rollback (docs/health.md) ------------------------
# On UEFI, Debian 13's machine (the other one has no slack for boots): GRUB counts in
# /boot's environment block on either firmware. The cycle's staged boots are on
# probation (BootAttempts=3): the upgrade's boot above is the good one. The failing ones
# after the rollback get one attempt (the unit tests of apt_ostree.boot.probation cover
# every counter state): 4 more boots, 2 of them failing.

HEALTH_CHECK = "/etc/apt-ostree/health.d/required.d/50-no-update"
HEALTH_WHY = "this machine does not want the update"
# A root filesystem that does not exist; dracut gives up after 10 s instead of 180 s
# (rd.retry: Debian 12's initqueue; rd.timeout: Debian 13's root device job), and the
# fail-fast kargs of a boot on probation then reboot.
NO_SUCH_ROOT = "root=UUID=00000000-0000-4000-8000-000000000000"
GRUBENV = "/boot/grub/grubenv"
CONF = "/etc/apt-ostree/apt-ostreed.conf"


def health_on_uefi_only(vm: VM) -> None:
    if vm.firmware != "uefi":
        pytest.skip("boot counting does not depend on the firmware: run once, on UEFI")


def test_health_the_upgrade_boot_ended_its_probation(vm: VM, updates: Updates) -> None:
    health_on_uefi_only(vm)  # the boot of the upgrade above, a good one (no boot of its own)
    full = boot_judged(vm)
    assert full["deployments"][0]["booted"]
    assert booted(full["deployments"])["base-checksum"] == updates.checksum
    assert full["boot-failure"] is None
    assert vm.run("systemctl is-active boot-complete.target") == "active"
    journal = vm.run("journalctl -b -o cat --no-pager -u 'apt-ostree-health-*'")
    assert "boots on probation (2 more boots)" in journal  # BootAttempts=3, one spent
    assert "booted well: it is the default for good" in journal
    assert "apt_ostree_tries" not in vm.run(f"cat {GRUBENV}")


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
    # The machine's history: this boot, the upgrade's, ..., the image's first boot.
    history = json.loads(vm.run("apt-ostree ex history --json --all"))
    assert history[0]["deployment"] == f"{now['checksum']}.{now['serial']}"
    assert history[1]["checksum"] == before["checksum"]
    assert history[1]["create-command"].startswith("apt-ostree")
    assert history[-1]["create-command"] == "apt-ostree compose"
    assert sum(h["boot-count"] for h in history) >= 4


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


def test_a_layered_kernel_of_the_next_release_boots(vm: VM) -> None:
    """Opt-in (APT_OSTREE_TEST_LAYERED_KERNEL=1): dracut builds its initramfs in the
    VM (minutes under TCG), more than CI's budget gives one check."""
    if not LAYERED_KERNEL or vm.firmware != "bios":
        pytest.skip("opt-in: APT_OSTREE_TEST_LAYERED_KERNEL=1 (bookworm on BIOS)")
    use_updates_apt_source(vm)
    name = vm.run(f"ls {UPDATES}/apt/pool/*/ | grep '^linux-image-6' | cut -d_ -f1").strip()
    kver = name.removeprefix("linux-image-")
    assert kver and kver != vm.run("uname -r")
    step(vm, f"apt-ostree install {name}", f"apt-ostree install {name}", timeout=1800)
    staged = status(vm)[0]
    assert staged["staged"] and staged["kernel"] == kver
    reboot(vm)
    assert vm.run("uname -r") == kver
    now = booted(status(vm))
    assert now["kernel"] == kver and name in now["packages"]
    assert f"Kernel: {kver} (layered)" in vm.run("apt-ostree status").replace("  ", "")
    assert vm.run("systemctl is-active multi-user.target") == "active"


def one_boot_attempt(vm: VM) -> None:
    vm.run(f"sed -i 's/^#BootAttempts=3$/BootAttempts=1/' {CONF} && grep -qx BootAttempts=1 {CONF}")


def fell_back(vm: VM, before: dict[str, Any], staged: dict[str, Any]) -> dict[str, Any]:
    """The machine is back on `before`, the default again; the failure of `staged`."""
    full = boot_judged(vm)
    deployments = full["deployments"]
    assert deployments[0]["booted"] and deployments[0]["id"] == before["id"]
    assert deployments[1]["checksum"] == staged["checksum"]
    failure: dict[str, Any] = full["boot-failure"]
    print(f"\n[boot] {vm.firmware}: recorded boot failure: {failure}")
    assert failure["checksum"] == staged["checksum"]
    assert failure["rolled-back-to"] == before["id"]
    assert "apt_ostree_tries" not in vm.run(f"cat {GRUBENV}")
    text = vm.run("apt-ostree status")
    assert f"Warning: deployment {failure['deployment']}" in text and "failed to boot" in text
    return failure


def test_health_a_failing_required_check_falls_back_by_itself(vm: VM, updates: Updates) -> None:
    health_on_uefi_only(vm)
    one_boot_attempt(vm)
    before = booted(status(vm))
    # The administrator's check: the update must not be booted here. Single quotes: the
    # interactive shell would expand `!` in double quotes.
    check = ["#!/bin/sh", f'if [ -e /{UPDATE_MARKER} ]; then echo "{HEALTH_WHY}"; exit 1; fi']
    lines = " ".join(f"'{line}'" for line in check)
    vm.run(f"mkdir -p {Path(HEALTH_CHECK).parent} && printf '%s\\n' {lines} > {HEALTH_CHECK}"
           f" && chmod +x {HEALTH_CHECK}")  # fmt: skip
    mount_updates(vm)
    step(vm, "apt-ostree upgrade", "apt-ostree upgrade")
    staged = status(vm)[0]
    assert staged["staged"] and staged["version"] == updates.version
    boot = vm.reboot(failing_boot=("failed on probation: rebooting",))
    print(f"\n[boot] {vm.firmware}: failing boot, then the fallback boot, in {boot:.1f}s")
    failure = fell_back(vm, before, staged)
    assert vm.status(f"test -e /{UPDATE_MARKER}") != 0
    assert failure["base-checksum"] == updates.checksum
    assert failure["check"] == "required check 50-no-update"
    assert HEALTH_WHY in failure["reason"] and HEALTH_WHY in vm.run("apt-ostree status")
    vm.run(f"rm {HEALTH_CHECK}")


def test_health_a_kernel_that_cannot_find_its_root_falls_back_by_itself(vm: VM) -> None:
    health_on_uefi_only(vm)
    one_boot_attempt(vm)
    before = booted(status(vm))
    kargs = f"apt-ostree kargs --append={NO_SUCH_ROOT} --append=rd.retry=10 --append=rd.timeout=10"
    step(vm, kargs, kargs)
    staged = status(vm)[0]
    assert staged["staged"]
    # The failing boot has the fail-fast kargs: dracut gives up and reboots; GRUB falls back.
    boot = vm.reboot(failing_boot=("rd.emergency=reboot",))
    print(f"\n[boot] {vm.firmware}: failing boot, then the fallback boot, in {boot:.1f}s")
    failure = fell_back(vm, before, staged)
    assert NO_SUCH_ROOT not in vm.run("cat /proc/cmdline")
    assert NO_SUCH_ROOT in failure["kernel-arguments"]
    assert failure["reason"] == "did not reach boot-complete.target"
    vm.run(f"sed -i 's/^BootAttempts=1$/#BootAttempts=3/' {CONF}")


def test_rebase_to_an_oci_layout_boots_the_image_and_upgrades_fetch_changed_layers(
    vm: VM, updates: Updates
) -> None:
    if vm.firmware != "uefi" or updates.layout is None:
        pytest.skip("following an image does not depend on the firmware: run once, on UEFI")
    mount_updates(vm)
    out = step(vm, "apt-ostree rebase (OCI layout)", f"apt-ostree rebase {OCI_IMAGE}")
    assert "Fetched image:" in out
    reboot(vm)
    deployments = status(vm)
    now = booted(deployments)
    assert deployments[0]["booted"]
    assert now["container-image-reference"] == OCI_IMAGE
    assert now["container-image-reference-digest"].startswith("sha256:")
    assert vm.run(f"cat /{UPDATE_MARKER}") == updates.version
    assert now["packages"] == LAYERED and vm.run(PACKAGE) == "hello from a layered package"

    # The tag moves to a later build: the upgrade fetches the layers that changed.
    changed = new_layers(updates.layout, "stable", "next")
    assert 0 < len(changed) < 4
    mount_updates(vm)
    # The disk is read-only: the moved index goes into an overlay on the layout.
    layout = f"{UPDATES}/{OCI}"
    overlay = f"lowerdir={layout},upperdir=/run/oci-upper,workdir=/run/oci-work"
    vm.run(f"mkdir -p /run/oci-upper /run/oci-work && mount -t overlay -o {overlay} overlay"
           f" {layout} && cp {layout}/{MOVED_INDEX} {layout}/index.json")  # fmt: skip
    # Digests compared, nothing fetched yet (the later build's version: _update_commit).
    check = vm.run("apt-ostree upgrade --check")
    assert f"{updates.version}.1" in check, check
    out = step(vm, "apt-ostree upgrade (OCI, one changed layer)", "apt-ostree upgrade")
    (line,) = [x for x in out.splitlines() if x.startswith("Fetched image:")]
    fetched, layers = int(line.split()[2]), int(line.split("and ")[1].split(" of")[0])
    assert layers == len(changed), line
    assert fetched <= 1.2 * sum(layer["size"] for layer in changed) + 64 * 1024, line
    staged = status(vm)[0]
    assert staged["staged"] and staged["container-image-reference"] == OCI_IMAGE
