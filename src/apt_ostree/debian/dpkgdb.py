"""Reading a tree's dpkg database."""

from __future__ import annotations

from pathlib import Path

import apt_pkg

from apt_ostree.debian.packages import PackageInfo
from apt_ostree.treefs import Tree

# Where a composed tree keeps its dpkg database, and where a plain tree does.
DPKG_DB_PATHS = ("usr/share/dpkg/database", "var/lib/dpkg")


def installed_packages(root: Path) -> list[PackageInfo]:
    """Every package dpkg considers installed in the tree at `root`, sorted.

    The status file is read inside the tree, with no symlink on the way to it
    (treefs.TreeError): what dpkg wrote there is what the commit records."""
    with Tree(root) as tree:
        for rel in DPKG_DB_PATHS:
            # A link in place of the database is an entry too: open_file refuses it.
            if not tree.exists(rel):
                continue
            try:
                status_file = tree.open_file(f"{rel}/status")
            except FileNotFoundError:
                continue
            break
        else:
            return []
    with status_file:
        return packages_from_status(status_file.read().decode("utf-8", "replace"))


def packages_from_status(text: str) -> list[PackageInfo]:
    """Every installed package of a dpkg status file's content, sorted."""
    packages = []
    for stanza in text.split("\n\n"):
        if not stanza.strip():
            continue
        section = apt_pkg.TagSection(stanza.strip("\n") + "\n")
        status = section.get("Status", "").split()
        if len(status) == 3 and status[2] == "installed":
            packages.append(
                PackageInfo(section["Package"], section["Version"], section["Architecture"])
            )
    return sorted(packages)
