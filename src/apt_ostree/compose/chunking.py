"""Split a commit's content objects into layers by Debian package (docs/oci.md).

Ownership comes from the dpkg database in the commit (`info/*.list`); the
paths there are as dpkg installed them (`/bin/x`, `/etc/x`, `/boot/vmlinuz-K`)
and are mapped to where the commit holds them. dpkg's `info/NAME.*` files go
with their package. Content no package owns is one component of its own;
the initramfs and dpkg's status are two more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from apt_ostree.errors import AptOstreeError
from apt_ostree.layout import DPKG_DB, KERNEL_BOOT_FILES
from apt_ostree.oci.ostreetar import CommitReader, CommitWalk

UNPACKAGED = "apt-ostree-unpackaged-content"
INITRAMFS = "apt-ostree-initramfs"
# dpkg's status changes with every package update: alone, it keeps the
# unpackaged layer (debconf cache, generated files) stable.
DPKG_STATUS = "apt-ostree-dpkg-status"
DPKG_STATUS_FILES = ("status", "status-old", "available")


@dataclass(frozen=True)
class Component:
    name: str
    size: int
    checksums: tuple[str, ...]


def dpkg_path_in_commit(listed: str, toplevel_links: dict[str, str]) -> str:
    """A path from a dpkg .list as the commit holds it."""
    path = listed.strip("/")
    head, sep, rest = path.partition("/")
    if head == "etc":
        return f"usr/etc{sep}{rest}"
    if head == "boot" and rest:
        for prefix, name in KERNEL_BOOT_FILES.items():
            if rest.startswith(prefix):
                return f"usr/lib/modules/{rest.removeprefix(prefix)}/{name}"
    if head in toplevel_links and rest:
        return f"{toplevel_links[head]}/{rest}"
    return path


def _read(reader: CommitReader, checksum: str) -> str:
    header, stream, _ = reader.open_file(checksum)
    if stream is None:
        return ""
    return stream.read(header.size).decode("utf-8", "surrogateescape")


def package_components(reader: CommitReader, walk: CommitWalk) -> list[Component]:
    """Every content object of the commit in exactly one component."""
    by_path = {path: checksum for checksum, paths in walk.objects.items() for path in paths}
    toplevel_links = {}
    for path, checksum in by_path.items():
        if "/" not in path:
            header, stream, _ = reader.open_file(checksum)
            if stream is None and header.linkname.startswith("usr/"):
                toplevel_links[path] = str(header.linkname)
    lists: dict[str, str] = {}
    prefix = f"{DPKG_DB}/info/"
    for path, checksum in by_path.items():
        if path.startswith(prefix) and path.endswith(".list") and "/" not in path[len(prefix) :]:
            package = path[len(prefix) : -len(".list")].partition(":")[0]
            lists[package] = checksum
    owner: dict[str, str] = {}
    # Sorted: an object that two packages ship goes to the first by name, every build.
    for package in sorted(lists):
        for line in _read(reader, lists[package]).splitlines():
            owned = by_path.get(dpkg_path_in_commit(line, toplevel_links))
            if owned is not None:
                owner.setdefault(owned, package)
    # dpkg's own files about a package (info/NAME[:ARCH].list, .md5sums, scripts)
    # travel with it: an update of one package changes only its layer there.
    for path, checksum in by_path.items():
        name = path[len(prefix) :] if path.startswith(prefix) else ""
        # NAME may hold dots (libperl5.36:amd64.list); the extension never does.
        package = name.rpartition(".")[0].partition(":")[0] if "/" not in name else ""
        if package in lists:
            owner.setdefault(checksum, package)
    for name in DPKG_STATUS_FILES:
        if f"{DPKG_DB}/{name}" in by_path:
            owner.setdefault(by_path[f"{DPKG_DB}/{name}"], DPKG_STATUS)
    for checksum, paths in walk.objects.items():
        if checksum not in owner:
            initramfs = any(
                p.startswith("usr/lib/modules/") and p.endswith("/initramfs.img") for p in paths
            )
            owner[checksum] = INITRAMFS if initramfs else UNPACKAGED
    members: dict[str, list[str]] = {}
    for checksum in walk.objects:
        members.setdefault(owner[checksum], []).append(checksum)
    return [
        Component(name, sum(reader.file_size(c) for c in checksums), tuple(checksums))
        for name, checksums in sorted(members.items())
    ]


def _by_size(components: Iterable[Component]) -> list[Component]:
    return sorted(components, key=lambda c: (-c.size, c.name))


def fresh_packing(components: Sequence[Component], bins: int) -> list[list[Component]]:
    """At most `bins` groups: the biggest components alone (up to half the bins),
    the rest lumped by name in runs of about equal size."""
    if bins < 1:
        return []
    ordered = _by_size(components)
    if len(ordered) <= bins:
        return [[c] for c in ordered]
    # dpkg's status changes with any package: lumped, it would drag its
    # neighbours into every update.
    alone = [c for c in ordered if c.name == DPKG_STATUS][: max(0, bins - 1)]
    alone += [c for c in ordered if c not in alone][: bins // 2]
    rest = sorted((c for c in ordered if c not in alone), key=lambda c: c.name)
    lumps = bins - len(alone)
    total = sum(c.size for c in rest)
    groups: list[list[Component]] = []
    current: list[Component] = []
    running = 0
    for i, component in enumerate(rest):
        current.append(component)
        running += component.size
        later_lumps = lumps - len(groups) - 1
        if later_lumps > 0 and (
            running * lumps >= (len(groups) + 1) * total or len(rest) - i - 1 == later_lumps
        ):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [[c] for c in alone] + groups


def prior_packing(
    components: Sequence[Component], bins: int, prior: Sequence[Sequence[str]]
) -> list[list[Component]] | None:
    """The groups of a previous build (its layers' `ostree.components`), minus the
    packages that are gone; new packages in one more group (or in the last one when
    the budget is spent). None when the previous build does not fit the budget."""
    by_name = {c.name: c for c in components}
    groups = [[by_name[n] for n in group if n in by_name] for group in prior]
    groups = [g for g in groups if g]
    known = {n for group in prior for n in group}
    new = [c for c in components if c.name not in known]
    if new:
        if len(groups) < bins:
            groups.append(new)
        elif groups:
            groups[-1] = groups[-1] + new
        else:
            return None
    return groups if 0 < len(groups) <= bins else None


def pack(
    components: Sequence[Component], bins: int, prior: Sequence[Sequence[str]] | None = None
) -> list[list[Component]]:
    if bins < 0:
        raise AptOstreeError("--max-layers must be at least 1")
    if prior:
        groups = prior_packing(components, bins, prior)
        if groups is not None:
            return groups
    return fresh_packing(components, bins)
