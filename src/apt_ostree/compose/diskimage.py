"""`compose disk-image`: a bootable GPT disk image of a composed commit.

Layout: a BIOS boot partition for GRUB's core.img (bios, both), an ESP with
GRUB as the removable-media loader EFI/BOOT/BOOTX64.EFI (uefi, both), an ext4
/boot and an ext4 or xfs root holding the OSTree sysroot. The sysroot uses libostree's
grub2 backend with apt-ostree's generator (apt_ostree.boot.grubcfg), so that
every deployment change rewrites /boot/loader.N/grub.cfg before the atomic
/boot/loader swap; /boot/grub/grub.cfg links to it. See docs/boot.md.

grub-install and grub-bios-setup cannot work on loop devices here, so the GRUB
images are made with grub-mkimage and written to the disk by this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.boot import grubenv
from apt_ostree.compose.sysroot import SysrootRequest, make_sysroot
from apt_ostree.errors import AptOstreeError
from apt_ostree.reporter import Reporter
from apt_ostree.run import run

FORMATS = ("raw", "qcow2")
FIRMWARES = ("bios", "uefi", "both")
MIB = 1024 * 1024
SECTOR = 512
BOOT_SIZE_MIB = 1024
ESP_SIZE_MIB = 64
BIOS_BOOT_SIZE_MIB = 1
# The smallest disk that holds the partitions above and a minimal Debian tree.
MIN_SIZE = 2 * 1024 * MIB


@dataclass(frozen=True)
class _Mkfs:
    """How to make one filesystem with a chosen label and UUID ({label}, {uuid} in argv)."""

    argv: tuple[str, ...]
    package: str


# The UUID is chosen before mkfs so that root=UUID= and the embedded GRUB config
# can name the filesystems; /boot stays ext4 because GRUB reads it (module ext2).
MKFS = {
    "ext4": _Mkfs(("mkfs.ext4", "-q", "-F", "-L", "{label}", "-U", "{uuid}"), "e2fsprogs"),
    "xfs": _Mkfs(("mkfs.xfs", "-q", "-f", "-L", "{label}", "-m", "uuid={uuid}"), "xfsprogs"),
}
ROOT_FILESYSTEMS = tuple(MKFS)
BOOT_FILESYSTEM = "ext4"

GPT_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

GRUB_LIB = Path("/usr/lib/grub")
GRUB_MODULES = ["part_gpt", "ext2", "search", "search_fs_uuid", "linux", "normal",
                "configfile", "echo", "serial", "terminal", "test", "boot",
                "loadenv"]  # fmt: skip
GRUB_PLATFORM_MODULES = {"i386-pc": ["biosdisk"], "x86_64-efi": ["fat", "efi_gop"]}

# boot.img (the MBR code) and diskboot.img (core.img's first sector): the
# fields grub-bios-setup patches, from GRUB's include/grub/i386/pc/boot.h.
BOOT_KERNEL_SECTOR = 0x5C
BOOT_DRIVE_CHECK = 0x66
MBR_CODE_SIZE = 440  # the rest of the MBR is the disk signature and the protective table
BLOCKLIST_START = SECTOR - 12  # struct { u64 start; u16 len; u16 segment; }
DISKBOOT_DEFAULT_START = 2  # grub-mkimage assumes core.img at sector 1


@dataclass
class DiskImageRequest:
    output: Path
    repo: Path
    ref: str
    size: int = 4 * 1024 * MIB
    format: str = "raw"
    firmware: str = "bios"
    kargs: list[str] = field(default_factory=list)
    root_fs: str = "ext4"
    osname: str = "debian"
    remote: str | None = None
    remote_url: str | None = None
    gpg_verify: bool = True


@dataclass
class DiskImage:
    path: Path
    checksum: str
    root_uuid: str
    boot_uuid: str


@dataclass
class _Partition:
    name: str
    type_guid: str
    size_mib: int | None  # None: the rest of the disk
    start: int = 0  # bytes, known after partitioning
    number: int = 0


def parse_size(text: str) -> int:
    """`4G`, `4096M`, `4GiB` or bytes."""
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?B)?", text.strip(), re.IGNORECASE)
    if m is None:
        raise AptOstreeError(f'invalid size "{text}": expected a number with K, M, G or T')
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(m.group(1)) * 1024**power


def _check(req: DiskImageRequest) -> None:
    if req.format not in FORMATS:
        raise AptOstreeError(f'--format "{req.format}": expected one of {", ".join(FORMATS)}')
    if req.firmware not in FIRMWARES:
        raise AptOstreeError(f'--firmware "{req.firmware}": expected one of {", ".join(FIRMWARES)}')
    if req.root_fs not in ROOT_FILESYSTEMS:
        raise AptOstreeError(
            f'--root-fs "{req.root_fs}": expected one of {", ".join(ROOT_FILESYSTEMS)}'
        )
    if req.size < MIN_SIZE:
        raise AptOstreeError(f"--size {req.size // MIB}M is too small; use at least 2G")
    if req.output.exists():
        raise AptOstreeError(f"{req.output} exists; remove it or choose another name")
    if not req.output.parent.is_dir():
        raise AptOstreeError(f"{req.output.parent} is not a directory")
    for platform in _grub_platforms(req.firmware):
        if not (GRUB_LIB / platform / "kernel.img").exists():
            package = "grub-pc-bin" if platform == "i386-pc" else "grub-efi-amd64-bin"
            raise AptOstreeError(f"GRUB for {platform} is not installed; install {package}")
    if req.firmware != "bios" and shutil.which("mcopy") is None:
        raise AptOstreeError(f"--firmware {req.firmware} needs mtools for the ESP; install mtools")
    for what, fs in ((f"--root-fs {req.root_fs}", req.root_fs), ("/boot", BOOT_FILESYSTEM)):
        mkfs = MKFS[fs]
        if shutil.which(mkfs.argv[0]) is None:
            raise AptOstreeError(f"{what} needs {mkfs.argv[0]}; install {mkfs.package}")
    if req.format == "qcow2" and shutil.which("qemu-img") is None:
        raise AptOstreeError("--format qcow2 needs qemu-img; install qemu-utils")


def _grub_platforms(firmware: str) -> list[str]:
    return {"bios": ["i386-pc"], "uefi": ["x86_64-efi"], "both": ["i386-pc", "x86_64-efi"]}[
        firmware
    ]


def _layout(firmware: str) -> list[_Partition]:
    parts = []
    if firmware in ("bios", "both"):
        parts.append(_Partition("bios", GPT_BIOS_BOOT, BIOS_BOOT_SIZE_MIB))
    if firmware in ("uefi", "both"):
        parts.append(_Partition("esp", GPT_ESP, ESP_SIZE_MIB))
    parts.append(_Partition("boot", GPT_LINUX, BOOT_SIZE_MIB))
    parts.append(_Partition("root", GPT_ROOT_X86_64, None))
    return parts


def _partition(disk: Path, parts: list[_Partition]) -> None:
    lines = ["label: gpt"]
    for p in parts:
        size = f", size={p.size_mib}MiB" if p.size_mib is not None else ""
        lines.append(f"type={p.type_guid}{size}, name={p.name}")
    run(["sfdisk", "--quiet", disk], input="\n".join(lines) + "\n", what="sfdisk")
    table = json.loads(run(["sfdisk", "--json", disk], what="sfdisk --json").stdout)
    entries = table["partitiontable"]["partitions"]
    for number, (p, entry) in enumerate(zip(parts, entries, strict=True), 1):
        p.start = int(entry["start"]) * SECTOR
        p.number = number


def _mkfs(fs: str, device: Path, label: str, fs_uuid: str) -> None:
    argv = [arg.format(label=label, uuid=fs_uuid) for arg in MKFS[fs].argv]
    run([*argv, device], what=f"{argv[0]} ({label})")


@contextlib.contextmanager
def _loop_device(image: Path) -> Iterator[Path]:
    dev = Path(run(["losetup", "--show", "-f", "-P", image], what="losetup").stdout.strip())
    try:
        yield dev
    finally:
        run(["losetup", "-d", dev], what="losetup -d")


def _partition_node(dev: Path, number: int) -> Path:
    """The loop partition's node; without udev it may need `partx -a` and a moment."""
    node = Path(f"{dev}p{number}")
    for attempt in range(50):
        if node.exists():
            return node
        if attempt == 5:
            run(["partx", "-a", dev], what="partx -a")
        time.sleep(0.1)
    raise AptOstreeError(f"{node} did not appear after partitioning {dev}")


@contextlib.contextmanager
def _mounted(device: Path, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", device, target], what=f"mount {device}")
    try:
        yield target
    finally:
        run(["sync", "-f", target], what="sync")
        run(["umount", target], what=f"umount {target}")


def _embedded_config(boot_uuid: str) -> str:
    # The /boot filesystem is GRUB's root: ostree's BLS paths are relative to it.
    return (
        f"search --no-floppy --fs-uuid --set=root {boot_uuid}\n"
        "set prefix=($root)/grub\n"
        "configfile ($root)/grub/grub.cfg\n"
    )


def _mkimage(platform: str, output: Path, config: Path) -> None:
    modules = GRUB_MODULES + GRUB_PLATFORM_MODULES[platform]
    fmt = "i386-pc" if platform == "i386-pc" else "x86_64-efi"
    run(["grub-mkimage", "-O", fmt, "-d", GRUB_LIB / platform, "-o", output, "-c", config,
         "-p", "/grub", *modules], what=f"grub-mkimage -O {fmt}")  # fmt: skip


def _install_bios(disk: Path, bios_boot: _Partition, core_img: Path) -> None:
    """Do what grub-bios-setup does for a core.img embedded in a BIOS boot partition."""
    core = bytearray(core_img.read_bytes())
    limit = BIOS_BOOT_SIZE_MIB * MIB
    if len(core) > limit:
        raise AptOstreeError(
            f"core.img is {len(core)} bytes; the BIOS boot partition holds {limit}"
        )
    core_lba = bios_boot.start // SECTOR
    start, _length, _segment = struct.unpack_from("<QHH", core, BLOCKLIST_START)
    if start != DISKBOOT_DEFAULT_START:
        raise AptOstreeError(f"unexpected core.img blocklist start {start}: unknown GRUB version")
    # diskboot.img loads the rest of core.img from the sectors after its own.
    struct.pack_into("<Q", core, BLOCKLIST_START, core_lba + 1)
    boot = bytearray((GRUB_LIB / "i386-pc/boot.img").read_bytes())
    struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, core_lba)
    # As grub-bios-setup for hard disks: trust %dl only if it names one (BIOS bugs).
    boot[BOOT_DRIVE_CHECK : BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    with disk.open("r+b") as f:
        f.seek(0)
        f.write(boot[:MBR_CODE_SIZE])
        f.seek(bios_boot.start)
        f.write(core)
        f.flush()
        os.fsync(f.fileno())


def _install_efi(esp: Path, loader: Path) -> None:
    """Put GRUB where firmware looks without NVRAM boot entries (the removable path).

    mtools writes the FAT filesystem from user space: no vfat module needed.
    """
    env = {"MTOOLS_SKIP_CHECK": "1"}
    run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], env=env, what="mmd")
    run(["mcopy", "-i", esp, loader, "::/EFI/BOOT/BOOTX64.EFI"], env=env, what="mcopy")


def build_disk_image(req: DiskImageRequest, reporter: Reporter) -> DiskImage:
    """Build the image at `req.output`; nothing is left there if it fails."""
    _check(req)
    parts = {p.name: p for p in _layout(req.firmware)}
    boot_uuid, root_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="apt-ostree-disk-", dir=req.output.parent) as tmp:
        work = Path(tmp)
        raw = work / "disk.raw"
        with raw.open("wb") as f:
            f.truncate(req.size)
        reporter.task_begin(f"Partitioning ({req.firmware})")
        _partition(raw, list(parts.values()))
        reporter.task_end()
        embedded = work / "embedded.cfg"
        embedded.write_text(_embedded_config(boot_uuid))
        with _loop_device(raw) as dev:
            nodes = {name: _partition_node(dev, p.number) for name, p in parts.items()}
            reporter.task_begin("Making filesystems")
            _mkfs(BOOT_FILESYSTEM, nodes["boot"], "boot", boot_uuid)
            _mkfs(req.root_fs, nodes["root"], "root", root_uuid)
            if "esp" in nodes:
                run(["mkfs.vfat", "-F", "32", "-n", "ESP", nodes["esp"]], what="mkfs.vfat")
            reporter.task_end()
            mnt = work / "mnt"
            with _mounted(nodes["root"], mnt), _mounted(nodes["boot"], mnt / "boot"):
                checksum = make_sysroot(
                    SysrootRequest(
                        path=mnt,
                        repo=req.repo,
                        ref=req.ref,
                        osname=req.osname,
                        kargs=[f"root=UUID={root_uuid}", "rw", *req.kargs],
                        remote=req.remote,
                        remote_url=req.remote_url,
                        gpg_verify=req.gpg_verify,
                        bootloader="grub2",
                    ),
                    reporter,
                )
                grub_dir = mnt / "boot/grub"
                grub_dir.mkdir(exist_ok=True)
                (grub_dir / "grub.cfg").symlink_to("../loader/grub.cfg")
                # An empty environment block for boot counting (docs/health.md): GRUB's
                # save_env only rewrites an existing file.
                grubenv.write(mnt / "boot" / grubenv.RELATIVE_PATH, {})
                if not (mnt / "boot/loader/grub.cfg").is_file():
                    raise AptOstreeError("libostree wrote no /boot/loader/grub.cfg")
            reporter.task_begin("Installing GRUB")
            if "esp" in nodes:
                efi = work / "BOOTX64.EFI"
                _mkimage("x86_64-efi", efi, embedded)
                _install_efi(nodes["esp"], efi)
        if "bios" in parts:
            core = work / "core.img"
            _mkimage("i386-pc", core, embedded)
            _install_bios(raw, parts["bios"], core)
        reporter.task_end()
        if req.format == "qcow2":
            reporter.task_begin("Converting to qcow2")
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, req.output],
                what="qemu-img convert")  # fmt: skip
            reporter.task_end()
        else:
            raw.rename(req.output)
    return DiskImage(req.output, checksum, root_uuid, boot_uuid)
