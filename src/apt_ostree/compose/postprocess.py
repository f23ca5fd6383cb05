"""Turn a bootstrapped Debian tree into the OSTree layout of docs/layout.md.

Each step is a function over the tree's root. `postprocess_tree` runs them in
order; `compose postprocess ROOTFS` and `compose tree` both use it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.layout import (
    DPKG_DB,
    STATE_DIR,
    STATE_MOVES,
    TMPFILES_DIR,
    build_initramfs,
    convert_var,
    remove_path,
    write_tmpfiles,
)
from apt_ostree.layout import LayoutError as PostprocessError
from apt_ostree.reporter import NullReporter, Reporter

__all__ = ["PostprocessError", "PostprocessOptions", "PostprocessResult", "postprocess_tree"]

# Top-level directories that live in /var (or /run) on an OSTree system.
TOPLEVEL_LINKS = {
    "home": "var/home",
    "root": "var/roothome",
    "opt": "var/opt",
    "srv": "var/srv",
    "mnt": "var/mnt",
    "media": "run/media",
}
MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass
class PostprocessOptions:
    machineid_compat: bool = True
    tmp_is_dir: bool = False
    initramfs_args: list[str] = field(default_factory=list)


@dataclass
class PostprocessResult:
    kernel_version: str | None = None
    bootable: bool = False
    tmpfiles_lines: int = 0


def postprocess_tree(
    root: Path, options: PostprocessOptions, reporter: Reporter | None = None
) -> PostprocessResult:
    """Convert `root` in place; raise PostprocessError with the reason on failure."""
    reporter = reporter or NullReporter()
    check_tree(root)
    result = PostprocessResult()
    merge_usr(root)
    kver = move_kernel(root)
    result.kernel_version = kver
    if kver is not None:
        reporter.task_begin(f"Generating initramfs for {kver}")
        build_initramfs(root, kver, options.initramfs_args)
        reporter.task_end()
        result.bootable = True
    else:
        reporter.message("No kernel in the tree: the commit will not be bootable")
    clean_boot(root)
    move_package_state(root)
    relocate_toplevel_dirs(root)
    result.tmpfiles_lines = convert_var(root)
    finish_etc(root, options)
    move_etc(root)
    make_toplevel_links(root, options.tmp_is_dir)
    return result


def check_tree(root: Path) -> None:
    if not root.is_dir():
        raise PostprocessError(f"{root} is not a directory")
    if not (root / "usr").is_dir():
        raise PostprocessError(f"{root} does not look like a Debian tree: no /usr")
    if (root / "usr/etc").exists() and (root / "etc").exists():
        raise PostprocessError(
            f"{root} has both /etc and /usr/etc: it is already (partly) postprocessed"
        )


def merge_usr(root: Path) -> None:
    """Make /bin, /sbin, /lib* symlinks into /usr, moving any content across."""
    for name in MERGED_USR_DIRS:
        top = root / name
        if top.is_symlink():
            continue
        if not top.exists():
            continue
        usrdir = root / "usr" / name
        usrdir.mkdir(exist_ok=True)
        for entry in top.iterdir():
            dest = usrdir / entry.name
            if dest.exists() or dest.is_symlink():
                if entry.is_symlink() or not entry.is_dir():
                    # Same file in both places: /usr wins, as with usrmerge.
                    entry.unlink()
                    continue
                raise PostprocessError(
                    f"cannot merge /{name}/{entry.name} into /usr: both are directories"
                )
            entry.rename(dest)
        top.rmdir()
        top.symlink_to(f"usr/{name}")


def find_kernels(root: Path) -> list[str]:
    kvers = set()
    boot = root / "boot"
    if boot.is_dir():
        for f in boot.glob("vmlinuz-*"):
            kvers.add(f.name.removeprefix("vmlinuz-"))
    modules = root / "usr/lib/modules"
    if modules.is_dir():
        for d in modules.iterdir():
            if (d / "vmlinuz").exists():
                kvers.add(d.name)
    return sorted(kvers)


def move_kernel(root: Path) -> str | None:
    """Move the kernel to /usr/lib/modules/$kver/vmlinuz; return $kver or None."""
    kvers = find_kernels(root)
    if not kvers:
        return None
    if len(kvers) > 1:
        raise PostprocessError(
            f"the tree has {len(kvers)} kernels ({', '.join(kvers)}); exactly one is supported"
        )
    kver = kvers[0]
    moddir = root / "usr/lib/modules" / kver
    moddir.mkdir(parents=True, exist_ok=True)
    for src_name, dest_name in (
        (f"vmlinuz-{kver}", "vmlinuz"),
        (f"config-{kver}", "config"),
        (f"System.map-{kver}", "System.map"),
    ):
        src = root / "boot" / src_name
        if src.is_file():
            shutil.move(src, moddir / dest_name)
    return kver


def clean_boot(root: Path) -> None:
    """/boot is empty in a commit: ostree writes the deployments' boot files."""
    boot = root / "boot"
    if boot.is_dir() and not boot.is_symlink():
        for entry in boot.iterdir():
            remove_path(entry)
    else:
        boot.mkdir(exist_ok=True)
    # The /vmlinuz and /initrd.img links linux-base makes point into /boot.
    for name in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        p = root / name
        if p.is_symlink() or p.exists():
            remove_path(p)


def _move_dir(src: Path, dest: Path) -> bool:
    if not src.exists() or src.is_symlink():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        raise PostprocessError(f"cannot move /{src} to /{dest}: the destination exists")
    shutil.move(src, dest)
    return True


def move_package_state(root: Path) -> None:
    """Move the dpkg database and other package state from /var into /usr."""
    lines = []
    if _move_dir(root / "var/lib/dpkg", root / DPKG_DB):
        lines.append(f"L /var/lib/dpkg - - - - ../../{DPKG_DB}")
    for var_path, name in STATE_MOVES.items():
        if _move_dir(root / var_path, root / STATE_DIR / name):
            depth = var_path.count("/")
            target = "../" * depth + f"{STATE_DIR}/{name}"
            lines.append(f"L /{var_path} - - - - {target}")
    if lines:
        write_tmpfiles(root, "apt-ostree-state.conf", lines)


def relocate_toplevel_dirs(root: Path) -> None:
    """Declare /var targets of the top-level links; refuse content we would lose."""
    lines = [
        "d /var/home 0755 root root -",
        "d /var/roothome 0700 root root -",
        "d /var/opt 0755 root root -",
        "d /var/srv 0755 root root -",
        "d /var/mnt 0755 root root -",
        "d /var/usrlocal 0755 root root -",
        "d /run/media 0755 root root -",
    ]
    local = root / "usr/local"
    if local.is_dir() and not local.is_symlink():
        for dirpath, dirnames, filenames in os.walk(local):
            dirnames.sort()
            if filenames:
                raise PostprocessError(
                    f"/usr/local has files ({filenames[0]} in /{Path(dirpath).relative_to(root)})"
                    ": /usr/local is /var/usrlocal on an OSTree system; install under /usr"
                )
            for d in dirnames:
                rel = (Path(dirpath) / d).relative_to(local)
                lines.append(f"d /var/usrlocal/{rel} 0755 root root -")
        shutil.rmtree(local)
    for name in TOPLEVEL_LINKS:
        top = root / name
        if top.is_dir() and not top.is_symlink():
            if name in ("home", "srv", "mnt", "media", "opt") and any(top.iterdir()):
                raise PostprocessError(
                    f"/{name} is not empty in the tree: content there would be hidden"
                    f" by the /{name} -> {TOPLEVEL_LINKS[name]} link"
                )
            # /root's dotfiles come from /etc/skel; they are not kept.
            shutil.rmtree(top)
    write_tmpfiles(root, "apt-ostree-toplevel.conf", lines)
    _override_toplevel_tmpfiles(root)


def _override_toplevel_tmpfiles(root: Path) -> None:
    """Point Debian's home.conf/provision.conf-style lines at the real directories.

    systemd-tmpfiles warns that /home, /srv and /root "exist and are not
    directories" once they are symlinks; an /etc/tmpfiles.d file of the same name
    overrides the one in /usr/lib.
    """
    moved = {f"/{name}": f"/{target}" for name, target in TOPLEVEL_LINKS.items()}
    for conf in sorted((root / TMPFILES_DIR).glob("*.conf")):
        if conf.name.startswith("apt-ostree-"):
            continue
        changed = False
        out = []
        for line in conf.read_text(errors="replace").splitlines():
            fields = line.split(None, 2)
            if len(fields) >= 2 and not fields[0].startswith("#"):
                path = fields[1]
                for old, new in moved.items():
                    if path == old or path.startswith(old + "/"):
                        line = line.replace(path, new + path[len(old) :], 1)
                        changed = True
                        break
            out.append(line)
        if changed:
            dest = root / "etc/tmpfiles.d" / conf.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(
                "# Rewritten by apt-ostree for the OSTree layout.\n" + "\n".join(out) + "\n"
            )


def finish_etc(root: Path, options: PostprocessOptions) -> None:
    etc = root / "etc"
    machine_id = etc / "machine-id"
    if machine_id.exists() or machine_id.is_symlink():
        machine_id.unlink()
    if options.machineid_compat:
        # An empty machine-id makes systemd generate one at first boot.
        machine_id.write_text("")
        machine_id.chmod(0o444)
    for name in ("resolv.conf", "hostname"):
        p = etc / name
        if p.exists() or p.is_symlink():
            p.unlink()


def move_etc(root: Path) -> None:
    """/etc is stored as /usr/etc; ostree 3-way-merges it at deploy."""
    etc = root / "etc"
    if not etc.is_dir() or etc.is_symlink():
        raise PostprocessError(f"{root} has no /etc directory")
    if (root / "usr/etc").exists():
        raise PostprocessError(f"{root} has both /etc and /usr/etc")
    etc.rename(root / "usr/etc")
    if (
        not (root / "usr/etc/os-release").exists()
        and not (root / "usr/etc/os-release").is_symlink()
    ):
        raise PostprocessError("the tree has no /etc/os-release (base-files is missing?)")


def make_toplevel_links(root: Path, tmp_is_dir: bool) -> None:
    for name, target in TOPLEVEL_LINKS.items():
        link = root / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    local = root / "usr/local"
    if local.is_symlink():
        local.unlink()
    local.symlink_to("../var/usrlocal")
    (root / "sysroot").mkdir(exist_ok=True)
    ostree = root / "ostree"
    if ostree.is_symlink() or ostree.exists():
        remove_path(ostree)
    ostree.symlink_to("sysroot/ostree")
    tmp = root / "tmp"
    if not tmp_is_dir:
        if tmp.exists() or tmp.is_symlink():
            remove_path(tmp)
        tmp.symlink_to("sysroot/tmp")
    else:
        if tmp.is_dir():
            for entry in tmp.iterdir():
                remove_path(entry)
        else:
            tmp.mkdir(mode=0o1777)
        tmp.chmod(0o1777)
    for name in ("proc", "sys", "dev", "run", "boot", "var"):
        d = root / name
        if d.is_dir():
            for entry in d.iterdir():
                remove_path(entry)
        else:
            d.mkdir()
