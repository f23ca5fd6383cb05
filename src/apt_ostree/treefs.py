"""Paths inside a tree that packages or an image control, resolved inside that tree.

apt-ostree's own code runs as root outside the sandbox, on trees that dpkg,
maintainer scripts or an image wrote. A plain `root / "usr/lib/opt"` follows a
symlink that a package planted there (`usr/lib/opt -> /etc`) out onto the host.
A `Tree` is a handle on such a tree's root (a directory fd) and every path it
takes is resolved with openat2(2) and RESOLVE_IN_ROOT: an absolute symlink
resolves against the tree's root, `..` stops there, magic links
(/proc/self/fd/...) are refused. The operations then work fd-relative and never
follow the last component unless they say so:

- reading (read_text, listdir, stat) follows links, inside the tree;
- writing (write_text, makedirs, symlink, chmod, rename, remove, copy) refuses a
  symlink anywhere on the way (RESOLVE_NO_SYMLINKS): a link there would only
  send apt-ostree's own output somewhere the booted system never reads it; the
  entry itself is replaced or removed, never written through.

docs/security.md ("Paths inside a tree") says what is refused and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from apt_ostree.errors import AptOstreeError

# openat2(2): the syscall number is 437 on every architecture (it came after the
# unification of syscall tables); struct open_how is three u64.
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_STRICT = _IN_ROOT | RESOLVE_NO_SYMLINKS
# A path that leads nowhere inside the tree: missing, through a non-directory, or
# into a link loop (or a magic link).
_LEADS_NOWHERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]  # fmt: skip


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class TreeError(AptOstreeError):
    """A path of the tree cannot be used as apt-ostree needs: `path` (absolute, as
    the tree sees it) is a symlink, not a directory, or not a regular file."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    for _ in range(16):
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        # EAGAIN: a concurrent rename raced with `..` resolution; the kernel asks to retry.
        if err != errno.EAGAIN:
            break
    if err == errno.ENOSYS:
        raise AptOstreeError("the kernel has no openat2(2) (Linux 5.6 or later is needed)")
    raise OSError(err, os.strerror(err), path)


def _rel(path: str | os.PathLike[str]) -> str:
    """`path` relative to the tree root ("." for the root); `..` is a bug in the caller."""
    rel = os.fspath(path).strip("/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"internal: {path!r} has a '..' component")
    return "/".join(parts) or "."


def _split(rel: str) -> tuple[str, str]:
    if rel == ".":
        raise ValueError("internal: the tree root has no parent")
    parent, _, name = rel.rpartition("/")
    return parent or ".", name


class Tree:
    """A handle on the directory `root`; every path given to it is inside the tree.
    Messages show paths as the tree sees them, under `shown_as` (a scratch /var: "/var")."""

    def __init__(self, root: Path, *, shown_as: str = "") -> None:
        self.root = Path(root)
        self.shown_as = shown_as.rstrip("/")
        self.fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tree:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- resolution ---------------------------------------------------------------

    def _open(self, rel: str, flags: int, *, strict: bool, mode: int = 0) -> int:
        """openat2 inside the tree; `strict`: a symlink or non-directory on the way
        is a TreeError (else the OSError, ELOOP for a link loop)."""
        try:
            return openat2(self.fd, rel, flags, _STRICT if strict else _IN_ROOT, mode)
        except OSError as e:
            if not strict:
                raise
            if e.errno == errno.ELOOP:
                raise TreeError(self._shown(self._first_link(rel)), "is a symbolic link") from e
            if e.errno == errno.ENOTDIR and flags & os.O_DIRECTORY:
                raise TreeError(self._shown(rel), "is not a directory") from e
            raise

    def _first_link(self, rel: str) -> str:
        """The first component of `rel` that is a symlink (for messages)."""
        prefix = ""
        for part in rel.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            try:
                st = os.stat(prefix, dir_fd=self.fd, follow_symlinks=False)
            except OSError:
                break
            if stat.S_ISLNK(st.st_mode):
                return prefix
        return rel

    def _shown(self, rel: str) -> str:
        return (self.shown_as + "/" + rel.removeprefix(".").lstrip("/")).rstrip("/") or "/"

    def _parent(self, path: str | os.PathLike[str]) -> tuple[int, str, str]:
        """(fd of the parent directory, last component, rel): no link on the way."""
        rel = _rel(path)
        parent, name = _split(rel)
        return self._open(parent, os.O_PATH | os.O_DIRECTORY, strict=True), name, rel

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """`path` as a host path for a program that takes a name (bwrap, libapt):
        refused if any component, the last included, is a symlink."""
        rel = _rel(path)
        os.close(self._open(rel, os.O_PATH, strict=True))
        return self.root / rel

    # --- reading: links are followed, inside the tree -------------------------------

    def lstat(self, path: str | os.PathLike[str]) -> os.stat_result | None:
        """The entry itself (a link is not followed); None when it does not exist.
        Links in the directories on the way resolve inside the tree."""
        rel = _rel(path)
        if rel == ".":
            return os.fstat(self.fd)
        parent, name = _split(rel)
        try:
            fd = openat2(self.fd, parent, os.O_PATH | os.O_DIRECTORY, _IN_ROOT)
        except OSError as e:
            if e.errno in _LEADS_NOWHERE:
                return None
            raise
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def stat(self, path: str | os.PathLike[str]) -> os.stat_result | None:
        """What `path` leads to, links followed inside the tree; None if nothing."""
        try:
            fd = openat2(self.fd, _rel(path), os.O_PATH, _IN_ROOT)
        except OSError as e:
            if e.errno in _LEADS_NOWHERE:
                return None
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def exists(self, path: str | os.PathLike[str]) -> bool:
        """The entry exists (a dangling link too)."""
        return self.lstat(path) is not None

    def is_dir(self, path: str | os.PathLike[str]) -> bool:
        """A real directory: not a link to one."""
        st = self.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def is_link(self, path: str | os.PathLike[str]) -> bool:
        st = self.lstat(path)
        return st is not None and stat.S_ISLNK(st.st_mode)

    def readlink(self, path: str | os.PathLike[str]) -> str:
        fd, name, _ = self._parent(path)
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def listdir(self, path: str | os.PathLike[str] = ".", *, strict: bool = False) -> list[str]:
        """Sorted names in the directory `path`; [] when it does not exist."""
        try:
            fd = self._open(_rel(path), os.O_RDONLY | os.O_DIRECTORY, strict=strict)
        except OSError as e:
            if e.errno == errno.ENOENT or (not strict and e.errno in _LEADS_NOWHERE):
                return []
            raise
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def read_bytes(self, path: str | os.PathLike[str], *, strict: bool = False) -> bytes | None:
        """The content of the regular file `path`; None when `path` leads to no
        regular file (missing, a directory, a device, a link to nowhere)."""
        rel = _rel(path)
        try:
            # O_NONBLOCK: opening a FIFO that a package left there must not hang.
            fd = self._open(rel, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK, strict=strict)
        except OSError as e:
            # ENXIO: a FIFO's or socket's open, which only a regular file is not.
            if e.errno in (errno.ENOENT, errno.ENXIO) or (not strict and e.errno in _LEADS_NOWHERE):
                return None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return f.read()

    def open_file(self, path: str | os.PathLike[str], *, strict: bool = True) -> BinaryIO:
        """The regular file `path` opened for reading, for a library that reads a file
        object; by default no symlink on the way or at `path`."""
        rel = _rel(path)
        fd = self._open(rel, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK, strict=strict)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise TreeError(self._shown(rel), "is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def read_text(self, path: str | os.PathLike[str], *, strict: bool = False) -> str | None:
        data = self.read_bytes(path, strict=strict)
        return None if data is None else data.decode(errors="replace")

    def walk(
        self, path: str | os.PathLike[str] = "."
    ) -> Iterator[tuple[str, list[str], list[str], int]]:
        """os.fwalk of the directory `path`: (dirpath relative to `path`, dirnames,
        filenames, dirfd), top-down; symlinks (to directories too) are never descended."""
        rel = _rel(path)
        fd = self._open(rel, os.O_RDONLY | os.O_DIRECTORY, strict=True)
        try:
            yield from os.fwalk(".", dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    # --- writing: no link on the way, the entry itself is never followed ---------------

    def makedirs(self, path: str | os.PathLike[str], mode: int = 0o755) -> None:
        """mkdir -p; an existing symlink or non-directory on the way is refused."""
        rel = _rel(path)
        if rel == ".":
            return
        fd = os.dup(self.fd)
        try:
            done = ""
            for part in rel.split("/"):
                done = f"{done}/{part}" if done else part
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                try:
                    child = openat2(fd, part, os.O_PATH | os.O_DIRECTORY, _STRICT)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        raise TreeError(self._shown(done), "is a symbolic link") from e
                    if e.errno == errno.ENOTDIR:
                        raise TreeError(self._shown(done), "is not a directory") from e
                    raise
                os.close(fd)
                fd = child
        finally:
            os.close(fd)

    def write_bytes(self, path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
        """Create or replace the file `path` (by rename: whatever entry was there,
        a symlink included, is replaced, never written through)."""
        fd, name, _ = self._parent(path)
        tmp = f".{name}.apt-ostree-tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=fd)  # fmt: skip
            with os.fdopen(out, "wb") as f:
                f.write(data)
                os.fchmod(out, mode)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        finally:
            os.close(fd)

    def write_text(self, path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
        self.write_bytes(path, text.encode(), mode)

    def mkdir(self, path: str | os.PathLike[str], mode: int = 0o755) -> None:
        fd, name, _ = self._parent(path)
        try:
            os.mkdir(name, mode, dir_fd=fd)
        finally:
            os.close(fd)

    def symlink(self, target: str, path: str | os.PathLike[str]) -> None:
        """Make `path` a symlink to `target` (nothing may be there)."""
        fd, name, _ = self._parent(path)
        try:
            os.symlink(target, name, dir_fd=fd)
        finally:
            os.close(fd)

    def chmod(self, path: str | os.PathLike[str], mode: int) -> None:
        """chmod of the entry itself; a symlink there is refused (Linux has no lchmod)."""
        fd, name, rel = self._parent(path)
        try:
            target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        try:
            if stat.S_ISLNK(os.fstat(target).st_mode):
                raise TreeError(self._shown(rel), "is a symbolic link")
            # An O_PATH fd takes no fchmod; its /proc link names exactly the inode it holds.
            os.chmod(f"/proc/self/fd/{target}", mode)
        finally:
            os.close(target)

    def chown(self, path: str | os.PathLike[str], uid: int, gid: int) -> None:
        """chown of the entry itself (a symlink's own owner, never its target's)."""
        fd, name, _ = self._parent(path)
        try:
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def unlink(self, path: str | os.PathLike[str], *, missing_ok: bool = False) -> None:
        """Remove the non-directory entry `path` (a symlink: the link itself)."""
        fd, name, _ = self._parent(path)
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            if not missing_ok:
                raise
        finally:
            os.close(fd)

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Remove the entry `path`, a whole directory included; no link is followed."""
        fd, name, _ = self._parent(path)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                # rmtree with dir_fd walks by fds and never follows a link.
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def rename(
        self, src: str | os.PathLike[str], dest: str | os.PathLike[str], *, replace: bool = False
    ) -> None:
        """Move the entry `src` to `dest` inside the tree; `dest` must not exist, or
        with `replace` may be a file or link (replaced, not followed)."""
        sfd, sname, _ = self._parent(src)
        try:
            dfd, dname, drel = self._parent(dest)
            try:
                if replace:
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                else:
                    _rename_noreplace(sfd, sname, dfd, dname, self._shown(drel))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def move_from(
        self, source: Tree, src: str | os.PathLike[str], dest: str | os.PathLike[str]
    ) -> None:
        """Move the entry `src` of the tree `source` to `dest` in this tree (which must
        not exist): a rename on the same filesystem, else a copy that keeps modes,
        owners, times and xattrs, then the removal of `src`."""
        sfd, sname, _ = source._parent(src)
        try:
            dfd, dname, drel = self._parent(dest)
            try:
                try:
                    _rename_noreplace(sfd, sname, dfd, dname, self._shown(drel))
                    return
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                _copy_entry(sfd, sname, dfd, dname, self._shown(drel))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        source.remove(src)

    def copy_from(
        self,
        source: Tree,
        src: str | os.PathLike[str],
        dest: str | os.PathLike[str],
        *,
        replace: bool = False,
    ) -> None:
        """Copy the entry `src` of `source` (a file, link or directory, never followed)
        to `dest` here; modes, owners, times and xattrs are kept. `dest` must not
        exist, or with `replace` may be a file or link, which is replaced by rename."""
        sfd, sname, _ = source._parent(src)
        try:
            dfd, dname, drel = self._parent(dest)
            try:
                if not replace:
                    _copy_entry(sfd, sname, dfd, dname, self._shown(drel))
                else:
                    tmp = f".{dname}.apt-ostree-tmp"
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=dfd)
                    _copy_entry(sfd, sname, dfd, tmp, self._shown(drel))
                    os.rename(tmp, dname, src_dir_fd=dfd, dst_dir_fd=dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)


def _rename_noreplace(sfd: int, sname: str, dfd: int, dname: str, shown: str) -> None:
    try:
        os.stat(dname, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
        return
    raise TreeError(shown, "exists already")


def _copy_entry(sfd: int, sname: str, dfd: int, dname: str, shown: str) -> None:
    st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(sname, dir_fd=sfd), dname, dir_fd=dfd)
        os.chown(dname, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(dname, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        return
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dname, 0o700, dir_fd=dfd)
        src = os.open(sname, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=sfd)
        try:
            dest = os.open(dname, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=dfd)
            try:
                for child in sorted(os.listdir(src)):
                    _copy_entry(src, child, dest, child, f"{shown}/{child}")
                _copy_metadata(src, dest, st)
            finally:
                os.close(dest)
        finally:
            os.close(src)
        return
    if not stat.S_ISREG(st.st_mode):
        raise TreeError(shown, "would be a device, FIFO or socket: only files, directories"
                        " and symlinks are copied")  # fmt: skip
    src = os.open(sname, os.O_RDONLY | os.O_NONBLOCK | nofollow, dir_fd=sfd)
    try:
        dest = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o600, dir_fd=dfd)
        try:
            while os.sendfile(dest, src, None, 1 << 30) > 0:
                pass
            _copy_metadata(src, dest, st)
        finally:
            os.close(dest)
    finally:
        os.close(src)


def _copy_metadata(src: int, dest: int, st: os.stat_result) -> None:
    # chown first: it clears setuid bits and file capabilities, which come after.
    os.fchown(dest, st.st_uid, st.st_gid)
    os.fchmod(dest, stat.S_IMODE(st.st_mode))
    for attr in os.listxattr(src):
        if attr.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(dest, attr, os.getxattr(src, attr))
        except OSError as e:
            # As shutil.copystat: a filesystem without that xattr namespace loses it.
            if e.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EINVAL):
                raise
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
