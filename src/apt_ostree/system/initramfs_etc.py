"""`apt-ostree initramfs-etc`: files of the machine's /etc in the initramfs, without
running dracut (docs/initramfs.md).

The origin lists the tracked paths (`initramfs-etc`, rpm-ostree's key). Every new
deployment of that origin (all go through `system.sysroot.deploy`) gets an overlay
initrd: a cpio archive (newc, uncompressed) of the tracked files as the merge
deployment's /etc has them at that moment (the running /etc on a booted system),
handed to libostree (`ostree_sysroot_stage_overlay_initrd`), which stores it in
/boot/ostree/initramfs-overlays/ and adds it as a second `initrd` of the boot
entry. The kernel unpacks it over the initramfs.
"""

from __future__ import annotations

import ctypes
import dataclasses
import posixpath
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.system.origin import Origin
from apt_ostree.treefs import Tree

if TYPE_CHECKING:
    from apt_ostree.system.sysroot import Sysroot


# Where ostree_sysroot_stage_overlay_initrd() puts them until a deployment is written.
STAGED_INITRDS = Path("/run/ostree/staged-initrds")


class InitramfsEtcError(AptOstreeError):
    pass


def normalize(path: str) -> str:
    """A tracked path: absolute, under /etc, normalized."""
    norm = posixpath.normpath(path) if path.startswith("/") else ""
    if not norm.startswith("/etc/") or "\n" in norm or ";" in norm:
        raise InitramfsEtcError(f'cannot track "{path}": only paths under /etc can be tracked')
    return norm


# -- the cpio archive -----------------------------------------------------------


def _header(ino: int, mode: int, size: int, mtime: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, 1, mtime, size, 0, 0, 0, 0, len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    return head + b"\0" * (-len(head) % 4)


def _member(ino: int, mode: int, data: bytes, mtime: int, name: str) -> bytes:
    return _header(ino, mode, len(data), mtime, name.encode()) + data + b"\0" * (-len(data) % 4)


def _entries(etc: Tree, rel: str) -> list[tuple[str, int, bytes, int]]:
    """(path in etc, mode, data, mtime) of `rel` and, for a directory, all below it."""
    st = etc.lstat(rel)
    if st is None:
        return []
    if stat.S_ISLNK(st.st_mode):
        return [(rel, st.st_mode, etc.readlink(rel).encode(), int(st.st_mtime))]
    if stat.S_ISREG(st.st_mode):
        return [(rel, st.st_mode, etc.read_bytes(rel, strict=True) or b"", int(st.st_mtime))]
    if not stat.S_ISDIR(st.st_mode):
        return []  # devices, sockets, fifos: nothing an initramfs reads from /etc
    out = [(rel, st.st_mode, b"", int(st.st_mtime))]
    for name in sorted(etc.listdir(rel, strict=True)):
        out += _entries(etc, f"{rel}/{name}")
    return out


def build_cpio(etc_dir: Path, tracked: list[str]) -> bytes:
    """The overlay initrd: the tracked paths of `etc_dir` (read inside it: a link is
    archived as a link, never followed) with their parent directories."""
    members: dict[str, tuple[int, bytes, int]] = {}
    with Tree(etc_dir, shown_as="/etc") as etc:
        for path in tracked:
            rel = path.removeprefix("/etc/")
            for name, mode, data, mtime in _entries(etc, rel):
                members[f"etc/{name}"] = (mode, data, mtime)
    if not members:
        return b""
    dirs = {"etc"}
    for name in list(members):
        parent = posixpath.dirname(name)
        while parent and parent not in members:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    out = []
    ino = 1
    for name in sorted(dirs - set(members)):
        out.append(_member(ino, stat.S_IFDIR | 0o755, b"", 0, name))
        ino += 1
    for name in sorted(members):
        mode, data, mtime = members[name]
        out.append(_member(ino, mode, data, mtime, name))
        ino += 1
    out.append(_member(0, 0, b"", 0, "TRAILER!!!"))
    return b"".join(out)


# -- deployment options ---------------------------------------------------------


class DeployOptions:
    """OSTree.SysrootDeployTreeOpts with `override_kernel_argv` and `overlay_initrds`.
    PyGObject cannot set a `char **` field of a struct (libostree 2022.7's GI has
    no setter for either), so the fields are written with ctypes at the offsets GI
    reports; the arrays live as long as this object, which the caller keeps for
    the deploy call."""

    def __init__(self, kargs: list[str], overlay_initrds: list[str]) -> None:
        self.opts = OSTree.SysrootDeployTreeOpts()
        self.overlay_initrds = overlay_initrds
        self._arrays: list[Any] = []
        self._set("override_kernel_argv", kargs)
        if overlay_initrds:
            self._set("overlay_initrds", overlay_initrds)

    def _set(self, name: str, values: list[str]) -> None:
        strings = [v.encode() for v in values]
        array = (ctypes.c_char_p * (len(strings) + 1))(*strings, None)
        self._arrays.append(array)
        offset = next(
            f.get_offset()
            for f in OSTree.SysrootDeployTreeOpts.__info__.get_fields()
            if f.get_name() == name
        )
        # PyGObject's hash() of a struct is the address of its C memory.
        ctypes.c_void_p.from_address(hash(self.opts) + offset).value = ctypes.addressof(array)

    def forget_staged(self) -> None:
        """libostree stages overlay initrds in the running system's /run (whatever the
        sysroot); once an offline deployment is written, its /boot has the copy."""
        for checksum in self.overlay_initrds:
            (STAGED_INITRDS / checksum).unlink(missing_ok=True)


def stage_overlay(sysroot: Sysroot, merge: OSTree.Deployment, origin: Origin) -> list[str]:
    """The overlay initrds for a new deployment with `origin`: staged with libostree,
    as their checksums (none when nothing is tracked)."""
    if not origin.initramfs_etc:
        return []
    etc_dir = sysroot.path / merge_dirpath(sysroot, merge) / "etc"
    data = build_cpio(etc_dir, origin.initramfs_etc)
    if not data:
        return []
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        try:
            _, checksum = sysroot.ostree.stage_overlay_initrd(f.fileno(), None)
        except GLib.Error as e:
            raise InitramfsEtcError(f"cannot stage the /etc overlay initrd: {e.message}") from e
    return [str(checksum)]


def merge_dirpath(sysroot: Sysroot, merge: OSTree.Deployment) -> str:
    return str(sysroot.ostree.get_deployment_dirpath(merge))


# -- the request ---------------------------------------------------------------


@dataclass
class EtcOutcome:
    changed: bool
    tracked: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)


def set_initramfs_etc(
    sysroot: Sysroot,
    osname: str,
    track: list[str],
    untrack: list[str],
    *,
    untrack_all: bool = False,
    force_sync: bool = False,
) -> EtcOutcome:
    """Change the tracked paths and make a new deployment with them (also when
    only `force_sync`: the files as they are now). Needs the sysroot lock."""
    from apt_ostree.system.packages import default_deployment
    from apt_ostree.system.sysroot import deploy

    track = [normalize(p) for p in track]
    untrack = [normalize(p) for p in untrack]
    current = default_deployment(sysroot, osname)
    origin = Origin.from_dict(current.origin)
    old = list(origin.initramfs_etc)
    new = [] if untrack_all else [p for p in old if p not in untrack]
    merge = sysroot.merge_deployment(osname)
    etc_dir = sysroot.path / merge_dirpath(sysroot, merge) / "etc"
    with Tree(etc_dir, shown_as="/etc") as etc:
        for path in track:
            if etc.lstat(path.removeprefix("/etc/")) is None:
                raise InitramfsEtcError(f"cannot track {path}: no such file")
            if path not in new:
                new.append(path)
    outcome = EtcOutcome(
        new != old or force_sync,
        tracked=[p for p in new if p not in old],
        untracked=[p for p in old if p not in new],
    )
    if not outcome.changed:
        return outcome
    new_origin = dataclasses.replace(origin, initramfs_etc=new)
    deploy(sysroot, osname, current.checksum, new_origin, kargs=current.kargs, merge=merge)
    return outcome
