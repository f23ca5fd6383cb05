"""Tar streams of an OSTree commit in ostree-ext's layout (docs/oci.md, "Layers").

Each layer holds a `sysroot/ostree/repo` in `bare-split-xattrs` mode: content
objects as `objects/XX/REST.file` (each preceded by its `.file-xattrs-link`,
the object's xattrs as an `a(ayay)` GVariant), and every checkout path of an
object as a hardlink to it, `/usr/etc` written as `/etc`. Layer 0 also holds
the commit, its detached metadata, every dirtree/dirmeta object and every
directory of the tree.
"""

from __future__ import annotations

import io
import stat
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

from apt_ostree.errors import RepoError
from apt_ostree.ostree import GLib, OSTree

REPO = "sysroot/ostree/repo"
REPO_CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
REPO_SUBDIRS = (
    "extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp",
    "tmp/cache",
)  # fmt: skip
# Not visible in containers anyway (containers/storage drops it); ostree-ext omits it too.
SKIPPED_TAR_XATTRS = ("security.selinux",)
SUFFIXES = {
    OSTree.ObjectType.COMMIT: "commit",
    OSTree.ObjectType.COMMIT_META: "commitmeta",
    OSTree.ObjectType.DIR_TREE: "dirtree",
    OSTree.ObjectType.DIR_META: "dirmeta",
    OSTree.ObjectType.FILE: "file",
}
CHUNK = 1 << 20


def object_path(objtype: OSTree.ObjectType, checksum: str) -> str:
    return f"{REPO}/objects/{checksum[:2]}/{checksum[2:]}.{SUFFIXES[objtype]}"


def tar_path(path: str) -> str:
    """A commit path ("usr/etc/x") as written in a layer ("etc/x")."""
    if path == "usr/etc" or path.startswith("usr/etc/"):
        return path[4:]
    return path


def _checksum(value: GLib.Variant) -> str:
    return str(OSTree.checksum_from_bytes_v(value))


def _be32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


@dataclass(frozen=True)
class DirMeta:
    uid: int
    gid: int
    mode: int


@dataclass
class CommitWalk:
    """The commit's directories (in walk order) and its content objects with their paths."""

    dirs: list[tuple[str, str, str]] = field(default_factory=list)  # path, dirtree, dirmeta
    dirmeta: dict[str, str] = field(default_factory=dict)  # path -> dirmeta checksum
    # checksum -> paths ("usr/bin/x"), in walk order; dict order = first appearance.
    objects: dict[str, list[str]] = field(default_factory=dict)


class CommitReader:
    """Read-only view of one commit of an OSTree repo."""

    def __init__(self, repo: OSTree.Repo, checksum: str) -> None:
        self.repo = repo
        self.checksum = checksum
        self.commit = self._load(OSTree.ObjectType.COMMIT, checksum)
        self.root_tree = _checksum(self.commit.get_child_value(6))
        self.root_meta = _checksum(self.commit.get_child_value(7))
        self._dirmeta: dict[str, DirMeta] = {}

    def _load(self, objtype: OSTree.ObjectType, checksum: str) -> GLib.Variant:
        try:
            _, variant = self.repo.load_variant(objtype, checksum)
        except GLib.Error as e:
            raise RepoError(f"cannot load {SUFFIXES[objtype]} {checksum}: {e.message}") from e
        return variant

    def variant(self, objtype: OSTree.ObjectType, checksum: str) -> GLib.Variant:
        return self._load(objtype, checksum)

    def detached_metadata(self) -> GLib.Variant | None:
        try:
            _, meta = self.repo.read_commit_detached_metadata(self.checksum, None)
        except GLib.Error as e:
            raise RepoError(f"cannot read the detached metadata: {e.message}") from e
        return meta

    def dirmeta(self, checksum: str) -> DirMeta:
        if checksum not in self._dirmeta:
            uid, gid, mode, _ = self._load(OSTree.ObjectType.DIR_META, checksum).unpack()
            # Stored big-endian (GVariant has no byte order of its own).
            self._dirmeta[checksum] = DirMeta(_be32(uid), _be32(gid), _be32(mode))
        return self._dirmeta[checksum]

    def walk(self) -> CommitWalk:
        result = CommitWalk()
        self._walk("", self.root_tree, result)
        return result

    def _walk(self, path: str, dirtree: str, result: CommitWalk) -> None:
        variant = self._load(OSTree.ObjectType.DIR_TREE, dirtree)
        files, dirs = variant.get_child_value(0), variant.get_child_value(1)
        for i in range(files.n_children()):
            entry = files.get_child_value(i)
            name = entry.get_child_value(0).get_string()
            checksum = _checksum(entry.get_child_value(1))
            result.objects.setdefault(checksum, []).append(f"{path}{name}")
        for i in range(dirs.n_children()):
            entry = dirs.get_child_value(i)
            name = entry.get_child_value(0).get_string()
            sub_tree = _checksum(entry.get_child_value(1))
            sub_meta = _checksum(entry.get_child_value(2))
            result.dirs.append((f"{path}{name}", sub_tree, sub_meta))
            result.dirmeta[f"{path}{name}"] = sub_meta
            self._walk(f"{path}{name}/", sub_tree, result)

    def file_size(self, checksum: str) -> int:
        """The size of a content object's data (0 for a symlink)."""
        try:
            _, _, info, _ = self.repo.load_file(checksum, None)
        except GLib.Error as e:
            raise RepoError(f"cannot load file {checksum}: {e.message}") from e
        return 0 if stat.S_ISLNK(info.get_attribute_uint32("unix::mode")) else info.get_size()

    def open_file(self, checksum: str) -> tuple[tarfile.TarInfo, BinaryIO | None, bytes]:
        """The object as a tar header, its content stream (None for a symlink) and xattrs."""
        try:
            _, stream, info, xattrs = self.repo.load_file(checksum, None)
        except GLib.Error as e:
            raise RepoError(f"cannot load file {checksum}: {e.message}") from e
        header = tarfile.TarInfo(object_path(OSTree.ObjectType.FILE, checksum))
        header.uid = info.get_attribute_uint32("unix::uid")
        header.gid = info.get_attribute_uint32("unix::gid")
        mode = info.get_attribute_uint32("unix::mode")
        header.mode = stat.S_IMODE(mode)
        header.mtime = 0
        if stat.S_ISLNK(mode):
            header.type = tarfile.SYMTYPE
            header.linkname = info.get_symlink_target()
            content = None
        else:
            header.type = tarfile.REGTYPE
            header.size = info.get_size()
            content = _GioReader(stream)
        xattr_bytes = bytes(xattrs.get_data_as_bytes().get_data() or b"") if xattrs else b""
        return header, content, xattr_bytes  # type: ignore[return-value]


class _GioReader:
    """A Gio.InputStream as a file object whose `read(n)` returns n bytes until the end."""

    def __init__(self, stream: object) -> None:
        self.stream = stream

    def read(self, size: int = CHUNK) -> bytes:
        parts: list[bytes] = []
        want = size
        while want > 0:
            data = self.stream.read_bytes(min(want, CHUNK), None).get_data()  # type: ignore[attr-defined]
            if not data:
                break
            parts.append(bytes(data))
            want -= len(data)
        return b"".join(parts)


def _tar_xattrs(xattrs: bytes) -> dict[str, str]:
    """The xattrs as PAX `SCHILY.xattr.*` records (values kept as raw bytes)."""
    if not xattrs:
        return {}
    variant = GLib.Variant.new_from_bytes(GLib.VariantType("a(ayay)"), GLib.Bytes(xattrs), False)
    records = {}
    for i in range(variant.n_children()):
        entry = variant.get_child_value(i)
        name = bytes(entry.get_child_value(0).get_data_as_bytes().get_data()).rstrip(b"\0")
        value = bytes(entry.get_child_value(1).get_data_as_bytes().get_data() or b"")
        key = name.decode("utf-8", "surrogateescape")
        if key not in SKIPPED_TAR_XATTRS:
            records[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    return records


class LayerTar:
    """One layer's tar stream over `out`."""

    def __init__(
        self, reader: CommitReader, walk: CommitWalk, out: BinaryIO, parent_dirs: bool = False
    ) -> None:
        self.reader = reader
        self.walk = walk
        # PAX: long paths and binary xattrs; everything else fits ustar headers.
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.parent_dirs = parent_dirs
        self._written_dirs: set[str] = set()
        self._written_objects: set[str] = set()

    def close(self) -> None:
        self.tar.close()

    def _add(self, info: tarfile.TarInfo, content: BinaryIO | None = None) -> None:
        info.mtime = 0
        info.uname = info.gname = ""
        self.tar.addfile(info, content)

    def directory(self, path: str, meta: DirMeta | None = None, commit_path: str = "") -> None:
        """A directory entry; `commit_path` records a directory of the tree as written."""
        if commit_path:
            self._written_dirs.add(commit_path)
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode = stat.S_IMODE(meta.mode) if meta else 0o755
        info.uid, info.gid = (meta.uid, meta.gid) if meta else (0, 0)
        self._add(info)

    def data(self, path: str, data: bytes) -> None:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        self._add(info, io.BytesIO(data))

    def repo_structure(self) -> None:
        for path in ("sysroot", "sysroot/ostree", REPO, f"{REPO}/objects"):
            self.directory(path)
        for i in range(256):
            self.directory(f"{REPO}/objects/{i:02x}")
        for sub in REPO_SUBDIRS:
            self.directory(f"{REPO}/{sub}")
        self.data(f"{REPO}/config", REPO_CONFIG)

    def metadata_object(self, objtype: OSTree.ObjectType, checksum: str) -> None:
        key = f"{checksum}.{SUFFIXES[objtype]}"
        if key in self._written_objects:
            return
        self._written_objects.add(key)
        variant = (
            self.reader.detached_metadata()
            if objtype == OSTree.ObjectType.COMMIT_META
            else self.reader.variant(objtype, checksum)
        )
        assert variant is not None
        self.data(object_path(objtype, checksum), bytes(variant.get_data_as_bytes().get_data()))

    def content(self, checksum: str, paths: list[str]) -> None:
        """The object (xattrs link first, then the .file) and a hardlink at each path."""
        header, stream, xattrs = self.reader.open_file(checksum)
        self.data(f"{header.name}-xattrs-link", xattrs)
        header.pax_headers = _tar_xattrs(xattrs)
        self._add(header, stream)
        header.pax_headers = {}
        for path in paths:
            if self.parent_dirs:
                self._parents(path)
            link = tarfile.TarInfo(tar_path(path))
            link.uid, link.gid, link.mode = header.uid, header.gid, header.mode
            if header.type == tarfile.REGTYPE and header.size == 0:
                # As ostree-ext: empty files are not linked, so that a derived
                # build that writes to one does not write into the repo.
                link.type = tarfile.REGTYPE
            else:
                link.type = tarfile.LNKTYPE
                link.linkname = header.name
            self._add(link)

    def _parents(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if not parent or parent in self._written_dirs:
            return
        self._parents(parent)
        self._written_dirs.add(parent)
        self.directory(tar_path(parent), self.reader.dirmeta(self.walk.dirmeta[parent]))


def write_commit_layer(
    reader: CommitReader,
    walk: CommitWalk,
    remainder: list[str],
    out: BinaryIO,
    parent_dirs: bool = False,
) -> None:
    """Layer 0: root, repo, commit (+ detached metadata), the whole directory
    structure with its dirtree/dirmeta objects, then the objects in `remainder`."""
    layer = LayerTar(reader, walk, out, parent_dirs)
    layer.directory("./", reader.dirmeta(reader.root_meta))
    layer.repo_structure()
    layer.metadata_object(OSTree.ObjectType.COMMIT, reader.checksum)
    if reader.detached_metadata() is not None:
        layer.metadata_object(OSTree.ObjectType.COMMIT_META, reader.checksum)
    layer.metadata_object(OSTree.ObjectType.DIR_META, reader.root_meta)
    layer.metadata_object(OSTree.ObjectType.DIR_TREE, reader.root_tree)
    has_var_tmp = False
    for path, dirtree, dirmeta in walk.dirs:
        layer.metadata_object(OSTree.ObjectType.DIR_META, dirmeta)
        layer.metadata_object(OSTree.ObjectType.DIR_TREE, dirtree)
        # /sysroot is the repo's own top directory in the layer: written above.
        if path == "sysroot" or path.startswith("sysroot/"):
            continue
        layer.directory(f"./{tar_path(path)}", reader.dirmeta(dirmeta), commit_path=path)
        has_var_tmp = has_var_tmp or path == "var/tmp"
    if not has_var_tmp:
        # Containers run without systemd-tmpfiles: give them a /var/tmp.
        layer.directory("var/tmp", DirMeta(0, 0, 0o1777))
    for checksum in remainder:
        layer.content(checksum, walk.objects[checksum])
    layer.close()


def write_chunk_layer(
    reader: CommitReader, walk: CommitWalk, checksums: list[str], out: BinaryIO,
    parent_dirs: bool = False,
) -> None:  # fmt: skip
    """A component layer: the repo skeleton, then its objects (sorted) with their paths."""
    layer = LayerTar(reader, walk, out, parent_dirs)
    layer.repo_structure()
    for checksum in sorted(checksums):
        layer.content(checksum, walk.objects[checksum])
    layer.close()
