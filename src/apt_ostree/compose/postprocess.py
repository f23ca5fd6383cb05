"""Turn a bootstrapped Debian tree into the OSTree layout of docs/layout.md.

Each step is a function over the tree's root. `postprocess_tree` runs them in
order; `compose postprocess ROOTFS` and `compose tree` both use it. The tree
is what packages and scripts made: every path goes through a treefs.Tree, so
that no link in it is followed out of it (docs/security.md).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree import machine_secrets
from apt_ostree.compose.accounts import write_base_sysusers
from apt_ostree.compose.reproducible import make_reproducible, tree_epoch
from apt_ostree.layout import (
    DPKG_DB,
    STATE_DIR,
    STATE_MOVES,
    TMPFILES_DIR,
    build_initramfs,
    convert_var,
    drop_boot_links,
    move_kernel_files,
    write_tmpfiles,
)
from apt_ostree.layout import LayoutError as PostprocessError
from apt_ostree.reporter import NullReporter, Reporter
from apt_ostree.treefs import Tree, TreeError

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
    # None: the newest date of the installed packages' files (reproducible.tree_epoch).
    source_date_epoch: int | None = None


@dataclass
class PostprocessResult:
    source_date_epoch: int
    kernel_version: str | None = None
    bootable: bool = False
    tmpfiles_lines: int = 0


def postprocess_tree(
    root: Path, options: PostprocessOptions, reporter: Reporter | None = None
) -> PostprocessResult:
    """Convert `root` in place; raise PostprocessError with the reason on failure."""
    try:
        return _postprocess(root, options, reporter or NullReporter())
    except TreeError as e:
        raise PostprocessError(f"cannot convert {root} to the OSTree layout: {e}") from e


def _postprocess(root: Path, options: PostprocessOptions, reporter: Reporter) -> PostprocessResult:
    check_tree(root)
    epoch = options.source_date_epoch
    if epoch is None:
        epoch = tree_epoch(root)
    result = PostprocessResult(epoch)
    merge_usr(root)
    kver = move_kernel(root)
    result.kernel_version = kver
    if kver is not None:
        reporter.task_begin(f"Generating initramfs for {kver}")
        build_initramfs(root, kver, options.initramfs_args, epoch)
        reporter.task_end()
        result.bootable = True
    else:
        reporter.message("No kernel in the tree: the commit will not be bootable")
    clean_boot(root)
    move_package_state(root)
    relocate_toplevel_dirs(root)
    with Tree(root) as tree:
        result.tmpfiles_lines = convert_var(tree)
    finish_etc(root, options)
    move_etc(root)
    with Tree(root) as tree:
        write_base_sysusers(tree, "usr/etc")
        make_reproducible(tree, epoch)
    # Host keys and the like: made on each machine at boot, never committed.
    with Tree(root) as tree:
        secrets = machine_secrets.strip_machine_secrets(
            tree, "usr/etc", machine_secrets.owned_paths(tree, DPKG_DB),
            conf="apt-ostree-compose.conf",
        )  # fmt: skip
    machine_secrets.report(secrets, reporter)
    make_toplevel_links(root, options.tmp_is_dir)
    return result


def _is_dir(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)


def _is_link(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISLNK(st.st_mode)


def _empty_dir(tree: Tree, rel: str, mode: int = 0o755) -> None:
    """`rel` as an empty real directory: its content removed, or whatever is there
    (a link, a file) replaced; never anything behind a link."""
    st = tree.lstat(rel)
    if _is_dir(st):
        for name in tree.listdir(rel, strict=True):
            tree.remove(f"{rel}/{name}")
        return
    if st is not None:
        tree.remove(rel)
    tree.mkdir(rel, mode)


def check_tree(root: Path) -> None:
    if not root.is_dir():
        raise PostprocessError(f"{root} is not a directory")
    with Tree(root) as tree:
        if not tree.is_dir("usr"):
            raise PostprocessError(f"{root} does not look like a Debian tree: no /usr directory")
        if tree.exists("usr/etc") and tree.exists("etc"):
            raise PostprocessError(
                f"{root} has both /etc and /usr/etc: it is already (partly) postprocessed"
            )


def merge_usr(root: Path) -> None:
    """Make /bin, /sbin, /lib* symlinks into /usr, moving any content across."""
    with Tree(root) as tree:
        for name in MERGED_USR_DIRS:
            st = tree.lstat(name)
            if st is None or _is_link(st):
                continue
            if not _is_dir(st):
                raise PostprocessError(f"/{name} is neither a directory nor a symlink")
            usrdir = f"usr/{name}"
            if not tree.exists(usrdir):
                tree.mkdir(usrdir)
            for entry in tree.listdir(name, strict=True):
                src, dest = f"{name}/{entry}", f"{usrdir}/{entry}"
                if tree.exists(dest):
                    if not tree.is_dir(src):
                        # Same file in both places: /usr wins, as with usrmerge.
                        tree.unlink(src)
                        continue
                    raise PostprocessError(
                        f"cannot merge /{name}/{entry} into /usr: both are directories"
                    )
                tree.rename(src, dest)
            tree.remove(name)
            tree.symlink(f"usr/{name}", name)


def find_kernels(root: Path) -> list[str]:
    with Tree(root) as tree:
        return _find_kernels(tree)


def _find_kernels(tree: Tree) -> list[str]:
    kvers = set()
    if tree.is_dir("boot"):
        for name in tree.listdir("boot", strict=True):
            if name.startswith("vmlinuz-"):
                kvers.add(name.removeprefix("vmlinuz-"))
    for name in tree.listdir("usr/lib/modules", strict=True):
        if tree.stat(f"usr/lib/modules/{name}/vmlinuz") is not None:
            kvers.add(name)
    return sorted(kvers)


def move_kernel(root: Path) -> str | None:
    """Move the kernel to /usr/lib/modules/$kver/vmlinuz; return $kver or None."""
    with Tree(root) as tree:
        kvers = _find_kernels(tree)
        if not kvers:
            return None
        if len(kvers) > 1:
            raise PostprocessError(
                f"the tree has {len(kvers)} kernels ({', '.join(kvers)}); exactly one is supported"
            )
        kver = kvers[0]
        moddir = f"usr/lib/modules/{kver}"
        tree.makedirs(moddir)
        if tree.is_dir("boot"):
            move_kernel_files(tree, kver)
        return kver


def clean_boot(root: Path) -> None:
    """/boot is empty in a commit: ostree writes the deployments' boot files."""
    with Tree(root) as tree:
        _empty_dir(tree, "boot")
        drop_boot_links(tree)


def _move_dir(tree: Tree, src: str, dest: str) -> bool:
    if not tree.is_dir(src):
        return False
    tree.makedirs(os.path.dirname(dest))
    if tree.exists(dest):
        raise PostprocessError(f"cannot move /{src} to /{dest}: the destination exists")
    tree.rename(src, dest)
    return True


def move_package_state(root: Path) -> None:
    """Move the dpkg database and other package state from /var into /usr."""
    lines = []
    with Tree(root) as tree:
        if _move_dir(tree, "var/lib/dpkg", DPKG_DB):
            lines.append(f"L /var/lib/dpkg - - - - ../../{DPKG_DB}")
        for var_path, name in STATE_MOVES.items():
            if _move_dir(tree, var_path, f"{STATE_DIR}/{name}"):
                depth = var_path.count("/")
                target = "../" * depth + f"{STATE_DIR}/{name}"
                lines.append(f"L /{var_path} - - - - {target}")
        if lines:
            write_tmpfiles(tree, "apt-ostree-state.conf", lines)


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
    with Tree(root) as tree:
        if tree.is_dir("usr/local"):
            for dirpath, dirnames, filenames, _ in tree.walk("usr/local"):
                dirnames.sort()
                where = os.path.normpath(f"usr/local/{dirpath}")
                if filenames:
                    raise PostprocessError(
                        f"/usr/local has files ({sorted(filenames)[0]} in /{where})"
                        ": /usr/local is /var/usrlocal on an OSTree system; install under /usr"
                    )
                for d in dirnames:
                    rel = os.path.normpath(f"{dirpath}/{d}")
                    lines.append(f"d /var/usrlocal/{rel} 0755 root root -")
            tree.remove("usr/local")
        for name in TOPLEVEL_LINKS:
            if tree.is_dir(name):
                if name in ("home", "srv", "mnt", "media", "opt") and tree.listdir(
                    name, strict=True
                ):
                    raise PostprocessError(
                        f"/{name} is not empty in the tree: content there would be hidden"
                        f" by the /{name} -> {TOPLEVEL_LINKS[name]} link"
                    )
                # /root's dotfiles come from /etc/skel; they are not kept.
                tree.remove(name)
        write_tmpfiles(tree, "apt-ostree-toplevel.conf", lines)
        _override_toplevel_tmpfiles(tree)


def _override_toplevel_tmpfiles(tree: Tree) -> None:
    """Point Debian's home.conf/provision.conf-style lines at the real directories.

    systemd-tmpfiles warns that /home, /srv and /root "exist and are not
    directories" once they are symlinks; an /etc/tmpfiles.d file of the same name
    overrides the one in /usr/lib.
    """
    moved = {f"/{name}": f"/{target}" for name, target in TOPLEVEL_LINKS.items()}
    for name in tree.listdir(TMPFILES_DIR, strict=True):
        if not name.endswith(".conf") or name.startswith("apt-ostree-"):
            continue
        text = tree.read_text(f"{TMPFILES_DIR}/{name}")
        if text is None:
            continue
        changed = False
        out = []
        for line in text.splitlines():
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
            tree.makedirs("etc/tmpfiles.d")
            tree.write_text(
                f"etc/tmpfiles.d/{name}",
                "# Rewritten by apt-ostree for the OSTree layout.\n" + "\n".join(out) + "\n",
            )


def finish_etc(root: Path, options: PostprocessOptions) -> None:
    with Tree(root) as tree:
        if tree.exists("etc/machine-id"):
            tree.remove("etc/machine-id")
        if options.machineid_compat:
            # An empty machine-id makes systemd generate one at first boot.
            tree.write_text("etc/machine-id", "", mode=0o444)
        for name in ("resolv.conf", "hostname"):
            if tree.exists(f"etc/{name}"):
                tree.remove(f"etc/{name}")


def move_etc(root: Path) -> None:
    """/etc is stored as /usr/etc; ostree 3-way-merges it at deploy."""
    with Tree(root) as tree:
        if not tree.is_dir("etc"):
            raise PostprocessError(f"{root} has no /etc directory")
        if tree.exists("usr/etc"):
            raise PostprocessError(f"{root} has both /etc and /usr/etc")
        tree.rename("etc", "usr/etc")
        if not tree.exists("usr/etc/os-release"):
            raise PostprocessError("the tree has no /etc/os-release (base-files is missing?)")


def make_toplevel_links(root: Path, tmp_is_dir: bool) -> None:
    with Tree(root) as tree:
        for name, target in TOPLEVEL_LINKS.items():
            if tree.is_link(name):
                tree.unlink(name)
            tree.symlink(target, name)
        if tree.is_link("usr/local"):
            tree.unlink("usr/local")
        tree.symlink("../var/usrlocal", "usr/local")
        if not tree.is_dir("sysroot"):
            _empty_dir(tree, "sysroot")
        if tree.exists("ostree"):
            tree.remove("ostree")
        tree.symlink("sysroot/ostree", "ostree")
        if not tmp_is_dir:
            if tree.exists("tmp"):
                tree.remove("tmp")
            tree.symlink("sysroot/tmp", "tmp")
        else:
            _empty_dir(tree, "tmp", 0o1777)
            tree.chmod("tmp", 0o1777)
        for name in ("proc", "sys", "dev", "run", "boot", "var"):
            _empty_dir(tree, name)
