"""Writing image layers into the ostree repo, straight from their tar streams.

Nothing is unpacked on disk: an image's layers are hostile input, and every
entry becomes an ostree object (checksummed by libostree) or a node of a
MutableTree, never a path on the host.

- ostree layers (ostree-ext's encapsulation: layer 0 and the chunk layers):
  the objects under `sysroot/ostree/repo/objects/` are written with their
  expected checksums, which libostree verifies; `.file-xattrs-link` gives the
  xattrs of the `.file` after it; the hardlinked checkout paths are skipped.
- derived layers (anything built on top, e.g. by `podman build`): ostree-ext's
  rules: `/etc` goes to `/usr/etc`, `/usr` is kept, every other top-level
  directory (`/var` included) is dropped, whiteouts stay as `.wh.` entries in
  the layer's tree and are applied when the layers are merged.
"""

from __future__ import annotations

import re
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO, Any

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree

_OBJECT = re.compile(
    r"(?:\./)?sysroot/ostree/repo/objects/([0-9a-f]{2})/([0-9a-f]{62})"
    r"\.(file|file-xattrs-link|dirtree|dirmeta|commit|commitmeta)"
)
_XATTRS_OBJECT = re.compile(r"(?:\./)?sysroot/ostree/repo/objects/xattrs/([0-9a-f]{64})")
_METADATA = {
    "dirtree": OSTree.ObjectType.DIR_TREE,
    "dirmeta": OSTree.ObjectType.DIR_META,
    "commit": OSTree.ObjectType.COMMIT,
}
_XATTRS_TYPE = GLib.VariantType.new("a(ayay)")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# Written (empty) by container runtimes into every container; not part of the image.
# ostree-ext drops the first two; podman's chroot isolation leaves /etc/hosts too.
_RUNTIME_INJECTED = ("usr/etc/hostname", "usr/etc/resolv.conf", "usr/etc/hosts")


class LayerError(AptOstreeError):
    pass


def empty_xattrs() -> Any:
    return GLib.Variant("a(ayay)", [])


def _xattrs_of(member: tarfile.TarInfo) -> Any:
    pairs = [
        (k.removeprefix("SCHILY.xattr.").encode() + b"\0", v.encode("utf-8", "surrogateescape"))
        for k, v in sorted(member.pax_headers.items())
        if k.startswith("SCHILY.xattr.") and k != "SCHILY.xattr.security.selinux"
    ]
    return GLib.Variant("a(ayay)", pairs) if pairs else empty_xattrs()


def _file_info(member: tarfile.TarInfo, uid: int | None = None, gid: int | None = None) -> Any:
    info = Gio.FileInfo.new()
    info.set_attribute_uint32("unix::uid", member.uid if uid is None else uid)
    info.set_attribute_uint32("unix::gid", member.gid if gid is None else gid)
    perms = stat.S_IMODE(member.mode)
    if member.issym():
        info.set_file_type(Gio.FileType.SYMBOLIC_LINK)
        info.set_attribute_uint32("unix::mode", stat.S_IFLNK | 0o777)
        info.set_symlink_target(member.linkname)
        info.set_size(0)
    elif member.isdir():
        info.set_file_type(Gio.FileType.DIRECTORY)
        info.set_attribute_uint32("unix::mode", stat.S_IFDIR | perms)
    else:
        info.set_file_type(Gio.FileType.REGULAR)
        info.set_attribute_uint32("unix::mode", stat.S_IFREG | perms)
        info.set_size(member.size)
    return info


def write_content(
    repo: OSTree.Repo,
    member: tarfile.TarInfo,
    data: bytes,
    xattrs: Any,
    expected: str | None = None,
) -> str:
    """One content object (regular file or symlink) from a tar entry; its checksum."""
    info = _file_info(member)
    # A symlink has no content; the binding wants a stream anyway (an empty one adds nothing).
    stream = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes(b"" if member.issym() else data))
    _, content, length = OSTree.raw_file_to_content_stream(stream, info, xattrs, None)
    try:
        _, raw = repo.write_content(expected, content, length, None)
    except GLib.Error as e:
        raise LayerError(f"a file in the image is corrupt: {e.message}") from e
    return str(OSTree.checksum_from_bytes(raw))


def write_dirmeta(repo: OSTree.Repo, uid: int, gid: int, mode: int, xattrs: Any) -> str:
    info = Gio.FileInfo.new()
    info.set_file_type(Gio.FileType.DIRECTORY)
    info.set_attribute_uint32("unix::uid", uid)
    info.set_attribute_uint32("unix::gid", gid)
    info.set_attribute_uint32("unix::mode", stat.S_IFDIR | stat.S_IMODE(mode))
    meta = OSTree.create_directory_metadata(info, xattrs)
    _, raw = repo.write_metadata(OSTree.ObjectType.DIR_META, None, meta, None)
    return str(OSTree.checksum_from_bytes(raw))


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    return f.read() if f is not None else b""


@dataclass
class ObjectLayer:
    """What an ostree layer held: its commit (layer 0) and its content objects."""

    commit: str | None = None
    content: list[str] = field(default_factory=list)


def import_object_layer(repo: OSTree.Repo, stream: IO[bytes]) -> ObjectLayer:
    """Write every ostree object of one encapsulated layer into `repo` (inside the
    caller's transaction); libostree checks each object against its name."""
    out = ObjectLayer()
    pending_xattrs: dict[str, Any] = {}
    xattr_files: dict[str, bytes] = {}
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if m := _XATTRS_OBJECT.fullmatch(member.name):
                if member.isfile():
                    xattr_files[m.group(0).removeprefix("./")] = _read(tar, member)
                continue
            m = _OBJECT.fullmatch(member.name)
            if m is None:
                continue  # checkout paths, repo skeleton
            checksum, kind = m.group(1) + m.group(2), m.group(3)
            try:
                if kind == "file-xattrs-link":
                    if member.islnk():
                        target = member.linkname.removeprefix("./")
                        if target not in xattr_files:
                            raise LayerError(f"xattrs of object {checksum} are missing")
                        data = xattr_files[target]
                    else:
                        data = _read(tar, member)
                    pending_xattrs[checksum] = GLib.Variant.new_from_bytes(
                        _XATTRS_TYPE, GLib.Bytes(data), False
                    )
                elif kind == "file":
                    if not (member.isfile() or member.issym()):
                        raise LayerError(f"object {checksum} is neither a file nor a symlink")
                    xattrs = pending_xattrs.pop(checksum, None) or _xattrs_of(member)
                    data = _read(tar, member) if member.isfile() else b""
                    write_content(repo, member, data, xattrs, checksum)
                    out.content.append(checksum)
                elif kind == "commitmeta":
                    variant = GLib.Variant.new_from_bytes(
                        GLib.VariantType.new("a{sv}"), GLib.Bytes(_read(tar, member)), False
                    )
                    repo.write_commit_detached_metadata(checksum, variant, None)
                else:
                    objtype = _METADATA[kind]
                    variant = GLib.Variant.new_from_bytes(
                        OSTree.metadata_variant_type(objtype), GLib.Bytes(_read(tar, member)), False
                    )
                    repo.write_metadata(objtype, checksum, variant, None)
                    if kind == "commit":
                        out.commit = checksum
            except GLib.Error as e:
                raise LayerError(f"object {checksum}.{kind} in the image: {e.message}") from e
    return out


# -- derived layers --------------------------------------------------------------


def lookup(node: Any, name: str) -> tuple[str | None, Any]:
    """(file checksum, subdirectory) of `name` in a MutableTree; (None, None) if absent."""
    try:
        _, checksum, sub = node.lookup(name)
    except GLib.Error:
        return None, None
    return checksum, sub


def _layer_path(name: str) -> list[str] | None:
    """The path of a derived-layer entry in the ostree tree, or None when dropped."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    if parts[0] == "etc":
        parts = ["usr", "etc", *parts[1:]]
    elif parts[0] != "usr":
        return None
    return parts


class DerivedLayer:
    """The tree of one derived layer, built in a MutableTree (whiteouts kept as entries)."""

    def __init__(self, repo: OSTree.Repo) -> None:
        self.repo = repo
        self.mtree = OSTree.MutableTree.new()
        self._default_dirmeta = write_dirmeta(repo, 0, 0, 0o755, empty_xattrs())
        self.mtree.set_metadata_checksum(self._default_dirmeta)
        self._paths: dict[str, str] = {}

    def _dir(self, parts: list[str]) -> Any:
        node = self.mtree
        for part in parts:
            _, sub = lookup(node, part)
            if sub is None:
                node.remove(part, True)
                _, sub = node.ensure_dir(part)
                sub.set_metadata_checksum(self._default_dirmeta)
            node = sub
        return node

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _layer_path(member.name)
        if parts is None:
            return
        path = "/".join(parts)
        if member.isdir():
            node = self._dir(parts)
            node.set_metadata_checksum(
                write_dirmeta(self.repo, member.uid, member.gid, member.mode, _xattrs_of(member))
            )
            return
        if member.islnk():
            target = _layer_path(member.linkname)
            checksum = self._paths.get("/".join(target)) if target else None
            if checksum is None:
                return  # a link to something this layer dropped
        elif member.isfile() or member.issym():
            data = _read(tar, member) if member.isfile() else b""
            if path in _RUNTIME_INJECTED and not data:
                return
            checksum = write_content(self.repo, member, data, _xattrs_of(member))
        else:
            return  # devices and fifos have no place in an ostree commit
        parent = self._dir(parts[:-1])
        _, sub = lookup(parent, parts[-1])
        if sub is not None:
            parent.remove(parts[-1], False)
        parent.replace_file(parts[-1], checksum)
        self._paths[path] = checksum


def import_derived_layer(repo: OSTree.Repo, stream: IO[bytes]) -> Any:
    """A derived layer's tree as a MutableTree (inside the caller's transaction)."""
    layer = DerivedLayer(repo)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            layer.add(tar, member)
    return layer.mtree


def apply_layer(repo: OSTree.Repo, target: Any, layer_root: Any) -> None:
    """Merge a derived layer's tree (a RepoFile root) onto `target`, applying
    whiteouts: `.wh.NAME` removes NAME, `.wh..wh..opq` empties the directory."""
    _apply_dir(target, layer_root)


def _children(directory: Any) -> list[Any]:
    enum = directory.enumerate_children("standard::name,standard::type", 0, None)
    out = []
    while (info := enum.next_file(None)) is not None:
        out.append(info)
    return out


def _apply_dir(node: Any, directory: Any) -> None:
    infos = _children(directory)
    names = {i.get_name() for i in infos}
    if OPAQUE in names:
        for name in list(node.get_files()) + list(node.get_subdirs()):
            node.remove(name, True)
    for info in infos:
        name = info.get_name()
        if name == OPAQUE:
            continue
        if name.startswith(WHITEOUT):
            node.remove(name.removeprefix(WHITEOUT), True)
            continue
        child = directory.get_child(name)
        if info.get_file_type() == Gio.FileType.DIRECTORY:
            child.ensure_resolved()
            _, sub = lookup(node, name)
            if sub is None:
                node.remove(name, True)
                _, sub = node.ensure_dir(name)
            sub.set_metadata_checksum(child.tree_get_metadata_checksum())
            _apply_dir(sub, child)
        else:
            _, sub = lookup(node, name)
            if sub is not None:
                node.remove(name, False)
            node.replace_file(name, child.get_checksum())
