"""Reading a tree's dpkg database."""

from __future__ import annotations

from pathlib import Path

import apt_pkg

from apt_ostree.debian.resolve import PackageInfo

# Where a composed tree keeps its dpkg database, and where a plain tree does.
DPKG_DB_PATHS = ("usr/share/dpkg/database", "var/lib/dpkg")


def dpkg_database(root: Path) -> Path | None:
    for rel in DPKG_DB_PATHS:
        if (root / rel / "status").is_file():
            return root / rel
    return None


def installed_packages(root: Path) -> list[PackageInfo]:
    """Every package dpkg considers installed in the tree at `root`, sorted."""
    db = dpkg_database(root)
    if db is None:
        return []
    packages = []
    with apt_pkg.TagFile(str(db / "status")) as tags:
        for section in tags:
            status = section.get("Status", "").split()
            if len(status) == 3 and status[2] == "installed":
                packages.append(
                    PackageInfo(section["Package"], section["Version"], section["Architecture"])
                )
    return sorted(packages)
