"""What would make two composes of the same inputs differ, made deterministic.

mmdebstrap already drops logs, apt's lists and caches and ldconfig's aux-cache,
and empties /etc/machine-id; convert_var drops /var's caches and logs. What is
left is fixed here, after the layout conversion: dates that tools wrote from the
clock (shadow's "last change" day) are set from SOURCE_DATE_EPOCH, and the
backup copies that dpkg and debconf keep of their previous state are removed.
docs/compose.md ("Reproducible commits") lists what is covered.
"""

from __future__ import annotations

import stat
from pathlib import Path

from apt_ostree.layout import DPKG_DB, STATE_DIR
from apt_ostree.treefs import Tree

# The previous state that dpkg and debconf keep beside their databases: it records
# the step before the last one of the bootstrap, nothing a machine needs.
BACKUP_DIRS = (DPKG_DB, f"{STATE_DIR}/debconf")
# Account files whose third field is the day of the last password change.
SHADOW_FILES = ("usr/etc/shadow",)
# The backups that shadow's tools leave of the account files: what they were before
# the last change, which depends on whether the previous commit seeded them.
ACCOUNT_BACKUPS = tuple(
    f"usr/etc/{name}-" for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
)


def tree_epoch(root: Path) -> int:
    """A SOURCE_DATE_EPOCH that only the package set decides: the newest of the
    packages' copyright files, which dpkg extracts with the date they have in the
    .deb (Debian's reproducible builds clamp it to the changelog's date); 0 if none."""
    newest = 0
    with Tree(root) as tree:
        for name in tree.listdir("usr/share/doc"):
            st = tree.lstat(f"usr/share/doc/{name}/copyright")
            if st is not None and stat.S_ISREG(st.st_mode):
                newest = max(newest, int(st.st_mtime))
    return newest


def _fixed_shadow(text: str, day: int) -> str:
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2]:
            fields[2] = str(day)
        out.append(":".join(fields))
    return "".join(f"{line}\n" for line in out)


def make_reproducible(tree: Tree, epoch: int) -> None:
    """Fix the dates and remove the backup files of a converted tree (/etc in /usr/etc)."""
    day = epoch // 86400
    for rel in SHADOW_FILES:
        st = tree.lstat(rel)
        text = tree.read_text(rel) if st is not None and stat.S_ISREG(st.st_mode) else None
        if text is not None:
            fixed = _fixed_shadow(text, day)
            if fixed != text:
                assert st is not None
                tree.write_text(rel, fixed, mode=stat.S_IMODE(st.st_mode))
                tree.chown(rel, st.st_uid, st.st_gid)
    for rel in ACCOUNT_BACKUPS:
        if tree.lstat(rel) is not None:
            tree.remove(rel)
    for d in BACKUP_DIRS:
        for name in tree.listdir(d):
            if name.endswith("-old"):
                tree.remove(f"{d}/{name}")
