"""Layered kernels: a `linux-image-*` package layered (or replacing the base's).

Debian's kernel packages install `/boot/vmlinuz-KVER` (with `config-KVER` and
`System.map-KVER`) and their modules in `/usr/lib/modules/KVER`. An OSTree
commit keeps `/boot` empty: after dpkg, apt-ostree moves these three files into
`/usr/lib/modules/KVER/` (`vmlinuz`, `config`, `System.map`), where libostree
looks for the kernel, and drops an initramfs that a kernel hook may have built
in `/boot` (apt-ostree builds the initramfs itself, with the ostree module).

libostree boots the first `/usr/lib/modules/*/vmlinuz` it finds, so the tree
keeps one: with several kernels the newest (Debian version order of KVER) is
booted, as rpm-ostree does, and the others keep their modules but lose their
`vmlinuz` and `initramfs.img` in the layered commit. The commit's `ostree.linux`
names the kernel; `status` shows it when it is not the base's (docs/layering.md).
"""

from __future__ import annotations

import re
from functools import cmp_to_key

from apt_ostree.errors import AptOstreeError
from apt_ostree.layout import drop_boot_links, move_kernel_files
from apt_ostree.treefs import Tree

MODULES = "usr/lib/modules"
# layout.KERNEL_BOOT_FILES (debian.dpkg.check_deb lets only a package with the
# modules of KVER install them).
_BOOT_FILE = re.compile(r"^(vmlinuz|config|System\.map)-(.+)$")
# Built by a kernel hook (initramfs-tools', dracut's) if one ran.
_INITRD = re.compile(r"^initrd\.img-(.+)$")


class KernelError(AptOstreeError):
    pass


def compare_kernels(a: str, b: str) -> int:
    import apt_pkg

    apt_pkg.init_system()
    return int(apt_pkg.version_compare(a, b))


def install_boot_files(tree: Tree) -> list[str]:
    """Move what kernel packages put in the tree's /boot into /usr/lib/modules/KVER;
    return the KVERs moved. Anything else in /boot is refused."""
    drop_boot_links(tree)
    if not tree.is_dir("boot"):
        return []
    kvers: set[str] = set()
    for name in sorted(tree.listdir("boot", strict=True)):
        path = f"boot/{name}"
        if _INITRD.match(name) and not tree.is_dir(path):
            tree.unlink(path)
            continue
        match = _BOOT_FILE.match(name)
        if match is None or tree.is_dir(path) or tree.is_link(path):
            raise KernelError(
                f"a package wrote /{path}: /boot is not part of the OSTree commit;"
                " packages must install under /usr"
            )
        moddir = f"{MODULES}/{match.group(2)}"
        if not tree.is_dir(moddir) or tree.is_link(moddir):
            raise KernelError(f"/{path} has no modules directory /{moddir}")
        kvers.add(match.group(2))
    for kver in sorted(kvers):
        move_kernel_files(tree, kver)
    return sorted(kvers)


def kernels(tree: Tree) -> list[str]:
    """The KVERs of /usr/lib/modules that have a vmlinuz, oldest first."""
    if not tree.is_dir(MODULES):
        return []
    found = [
        kver
        for kver in tree.listdir(MODULES, strict=True)
        if tree.is_dir(f"{MODULES}/{kver}") and tree.lstat(f"{MODULES}/{kver}/vmlinuz") is not None
    ]
    return sorted(found, key=cmp_to_key(compare_kernels))


def keep_newest(tree: Tree) -> tuple[str | None, list[str], list[str]]:
    """Leave the newest kernel the only bootable one: (that KVER, the other KVERs,
    the files removed from them)."""
    found = kernels(tree)
    if not found:
        return None, [], []
    newest, older = found[-1], found[:-1]
    removed = []
    for kver in older:
        for name in ("vmlinuz", "initramfs.img"):
            path = f"{MODULES}/{kver}/{name}"
            if tree.lstat(path) is not None:
                tree.unlink(path)
                removed.append(path)
    return newest, older, removed
