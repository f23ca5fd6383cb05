"""Room in /boot for a new deployment, checked before libostree writes anything.

Writing a deployment puts two things in /boot: the kernel, initramfs and
devicetree of the commit in `/boot/ostree/<osname>-<bootcsum>/` (each file
only if it is not already there), and a new `loader.N` directory with the BLS
entries of every deployment (and, with GRUB, a generated grub.cfg). libostree
links the boot files from the deployment when /boot is on the same mount,
and copies them otherwise; a full /boot fails halfway through, so the space is
checked first.

The bootcsum is libostree's sha256 over the kernel, then the initramfs, then
the devicetree. It is not computed here: the file contents are the same when
the repo's content checksums of the boot files are the same, so an existing
deployment whose commit has the same boot files tells the bootcsum (its
`get_bootcsum()`) without reading a byte of kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree

# The new loader.N directory: one small BLS entry per deployment and, with the
# grub2 backend, a grub.cfg of a few KiB.
LOADER_MARGIN = 1024 * 1024
_ATTRS = "standard::name,standard::type,standard::size,standard::symlink-target"
_NOFOLLOW = Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Legacy layouts: files named `vmlinuz-<bootcsum>` etc. (libostree's order of lookup).
_LEGACY_DIRS = ("usr/lib/ostree-boot", "boot")
_LEGACY_KINDS = ("vmlinuz", "initramfs", "devicetree")


class BootSpaceError(AptOstreeError):
    pass


@dataclass(frozen=True)
class BootFile:
    name: str  # path under /boot/ostree/<osname>-<bootcsum>/
    size: int
    checksum: str  # content checksum in the repo


@dataclass(frozen=True)
class KernelLayout:
    """What libostree installs into /boot for one commit."""

    files: tuple[BootFile, ...]
    bootcsum: str | None = None  # known without reading only for the legacy layouts

    @property
    def has_initramfs(self) -> bool:
        return any(f.name.startswith("initramfs") for f in self.files)

    @property
    def identity(self) -> frozenset[tuple[str, str]]:
        """Equal for two commits exactly when they install the same files in /boot."""
        return frozenset((f.name, f.checksum) for f in self.files)


# -- reading the commit ---------------------------------------------------------


def _lookup(root: OSTree.RepoFile, f: Gio.File) -> tuple[Gio.File, Gio.FileInfo] | None:
    """`f` and its info, following symlinks inside the commit (as libostree's fstatat does)."""
    for _ in range(16):
        try:
            info = f.query_info(_ATTRS, _NOFOLLOW, None)
        except GLib.Error as e:
            if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND):
                return None
            raise
        if info.get_file_type() != Gio.FileType.SYMBOLIC_LINK:
            return f, info
        target = info.get_symlink_target()
        parent = f.get_parent()
        if target.startswith("/") or parent is None:
            f = root.resolve_relative_path(target.lstrip("/"))
        else:
            f = parent.resolve_relative_path(target)
    return None


def _children(d: Gio.File) -> list[Gio.FileInfo]:
    return sorted(d.enumerate_children(_ATTRS, _NOFOLLOW, None), key=lambda i: i.get_name())


def _regular(root: OSTree.RepoFile, d: Gio.File, name: str, dest: str) -> BootFile | None:
    found = _lookup(root, d.get_child(name))
    if found is None or found[1].get_file_type() != Gio.FileType.REGULAR:
        return None
    f, info = found
    return BootFile(dest, info.get_size(), f.get_checksum())


def _tree_files(root: OSTree.RepoFile, d: Gio.File, prefix: str) -> list[BootFile]:
    """Every file under `d` (a devicetree directory is copied whole)."""
    out: list[BootFile] = []
    for info in _children(d):
        name, child = info.get_name(), d.get_child(info.get_name())
        if info.get_file_type() == Gio.FileType.DIRECTORY:
            out += _tree_files(root, child, f"{prefix}/{name}")
        else:
            out.append(BootFile(f"{prefix}/{name}", info.get_size(), child.get_checksum()))
    return out


def _usrlib_modules_layout(root: OSTree.RepoFile) -> KernelLayout | None:
    modules = root.resolve_relative_path("usr/lib/modules")
    found = _lookup(root, modules)
    if found is None or found[1].get_file_type() != Gio.FileType.DIRECTORY:
        return None
    for info in _children(modules):
        if info.get_file_type() != Gio.FileType.DIRECTORY:
            continue
        kver, d = info.get_name(), modules.get_child(info.get_name())
        kernel = _regular(root, d, "vmlinuz", f"vmlinuz-{kver}")
        if kernel is None:
            continue
        files = [kernel]
        for name in ("initramfs.img", "initramfs"):
            initramfs = _regular(root, d, name, f"initramfs-{kver}.img")
            if initramfs is not None:
                files.append(initramfs)
                break
        devicetree = _regular(root, d, "devicetree", f"devicetree-{kver}")
        if devicetree is not None:
            files.append(devicetree)
        else:
            dtb = _lookup(root, d.get_child("dtb"))
            if dtb is not None and dtb[1].get_file_type() == Gio.FileType.DIRECTORY:
                files += _tree_files(root, dtb[0], "dtb")
        hmac = _regular(root, d, ".vmlinuz.hmac", f".vmlinuz-{kver}.hmac")
        if hmac is not None:
            files.append(hmac)
        return KernelLayout(tuple(files))
    return None


def _legacy_layout(root: OSTree.RepoFile) -> KernelLayout | None:
    for path in _LEGACY_DIRS:
        d = root.resolve_relative_path(path)
        found = _lookup(root, d)
        if found is None or found[1].get_file_type() != Gio.FileType.DIRECTORY:
            continue
        files: dict[str, BootFile] = {}
        bootcsum = None
        for info in _children(found[0]):
            kind, _, csum = info.get_name().rpartition("-")
            kind = kind.split("-", 1)[0]
            if kind in _LEGACY_KINDS and kind not in files and _SHA256.fullmatch(csum):
                name = info.get_name().removesuffix(f"-{csum}")
                file = _regular(root, found[0], info.get_name(), name)
                if file is not None:
                    files[kind] = file
                    bootcsum = bootcsum if kind != "vmlinuz" else csum
        if "vmlinuz" not in files:
            return None
        return KernelLayout(tuple(files.values()), bootcsum)
    return None


def kernel_layout(repo: OSTree.Repo, checksum: str) -> KernelLayout | None:
    """The boot files of commit `checksum`, chosen as libostree's `get_kernel_from_tree`."""
    try:
        _, root, _ = repo.read_commit(checksum, None)
        modules = _usrlib_modules_layout(root)
        legacy = _legacy_layout(root)
    except GLib.Error as e:
        raise BootSpaceError(f"cannot read the boot files of {checksum[:12]}: {e.message}") from e
    if legacy is None:
        return modules
    if modules is not None and (modules.has_initramfs or not legacy.has_initramfs):
        return modules
    return legacy


# -- the space needed -----------------------------------------------------------


def _round_up(size: int, block: int) -> int:
    return -(-size // block) * block


def bytes_to_install(
    layout: KernelLayout | None, bootcsum_dirs: Iterable[Path], block_size: int
) -> int:
    """What copying `layout` into /boot takes: the files missing from every one of
    `bootcsum_dirs` (the `/boot/ostree/<osname>-<bootcsum>` it may already have),
    each rounded up to whole blocks, plus the new loader directory."""
    dirs = list(bootcsum_dirs)
    files = layout.files if layout is not None else ()
    missing = [f for f in files if not any((d / f.name).exists() for d in dirs)]
    return sum(_round_up(f.size, block_size) for f in missing) + LOADER_MARGIN


def _known_bootcsums(sysroot: OSTree.Sysroot, repo: OSTree.Repo, layout: KernelLayout) -> set[str]:
    """Bootcsums of the deployments whose commits install the same boot files."""
    if layout.bootcsum is not None:
        return {layout.bootcsum}
    out = set()
    for deployment in sysroot.get_deployments():
        bootcsum = deployment.get_bootcsum()
        if not bootcsum or bootcsum in out:
            continue
        try:
            theirs = kernel_layout(repo, deployment.get_csum())
        except BootSpaceError:
            continue  # not readable: count the files as missing
        if theirs is not None and theirs.identity == layout.identity:
            out.add(bootcsum)
    return out


def _links_into_boot(sysroot_path: Path, osname: str, booted: bool) -> bool:
    """libostree hardlinks the boot files when /boot and the deployments share a mount.

    Only claimed offline with /boot a plain directory: on a booted system /boot
    is a mount (at least a bind mount), across which link() fails and libostree copies.
    """
    boot = sysroot_path / "boot"
    deploy_dir = sysroot_path / "ostree/deploy" / osname / "deploy"
    if booted or os.path.ismount(boot):
        return False
    try:
        return os.stat(boot).st_dev == os.stat(deploy_dir).st_dev
    except OSError:
        return False


def require_boot_space(
    sysroot: OSTree.Sysroot, sysroot_path: Path, osname: str, checksum: str, *, booted: bool
) -> None:
    """Fail, before anything is written, when /boot cannot hold a deployment of `checksum`."""
    boot = sysroot_path / "boot"
    try:
        st = os.statvfs(boot)
    except OSError as e:
        raise BootSpaceError(f"cannot read the free space of {boot}: {e.strerror}") from e
    _, repo = sysroot.get_repo(None)
    layout = (
        None if _links_into_boot(sysroot_path, osname, booted) else kernel_layout(repo, checksum)
    )
    dirs: list[Path] = []
    if layout is not None:
        dirs = [boot / "ostree" / f"{osname}-{c}" for c in _known_bootcsums(sysroot, repo, layout)]
    needed = bytes_to_install(layout, dirs, st.f_frsize)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise BootSpaceError(not_enough_space_message(needed, free))


def require_loader_space(sysroot_path: Path) -> None:
    """Fail first when /boot cannot hold a new loader.N (a reordering: rollback)."""
    boot = sysroot_path / "boot"
    try:
        st = os.statvfs(boot)
    except OSError as e:
        raise BootSpaceError(f"cannot read the free space of {boot}: {e.strerror}") from e
    free = st.f_bavail * st.f_frsize
    if free < LOADER_MARGIN:
        raise BootSpaceError(not_enough_space_message(LOADER_MARGIN, free))


def format_size(size: int) -> str:
    """Decimal units as GLib's format_size, with a plain space (GLib's is U+00A0)."""
    if size < 1000:
        return f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 999.95 or unit == "GB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def not_enough_space_message(needed: int, free: int) -> str:
    return (
        f"not enough space in /boot for the new deployment: needs {format_size(needed)},"
        f" {format_size(free)} free (remove old deployments with"
        ' "apt-ostree cleanup -r" or free space in /boot)'
    )
