"""Users and groups of a composed tree: stable ids across composes, and a copy in /usr.

The previous commit's account files are an input (rpm-ostree's `check-passwd:
previous`): they seed the new tree's /etc before any package is installed, so that
maintainer scripts find the users they create already there and every id stays what
it was. After the compose, an id that changed anyway fails it, unless the treefile
says `check-passwd: {type: none}` (or `check-groups`).

The tree's system users and groups are also written to
/usr/lib/sysusers.d/apt-ostree-base.conf with their ids: ostree's /etc merge keeps a
machine's own /etc/passwd once it was edited, and systemd-sysusers adds the users of
a new base from there (at deploy time on an offline sysroot, at boot otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.treefs import Tree

SYSUSERS_CONF = "usr/lib/sysusers.d/apt-ostree-base.conf"
# The account files, in the tree's /etc, that the previous commit seeds.
SEEDED = ("passwd", "group", "shadow", "gshadow")


class AccountsError(AptOstreeError):
    pass


@dataclass(frozen=True)
class Accounts:
    """The previous commit's /usr/etc account files (name -> text; absent ones left out)."""

    files: dict[str, str]

    def ids(self, name: str) -> dict[str, int]:
        return parse_ids(self.files.get(name, ""))


def parse_ids(text: str) -> dict[str, int]:
    """name -> id (third field) of a passwd or group file."""
    ids: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            ids.setdefault(fields[0], int(fields[2]))
    return ids


def previous_accounts(repo: OSTree.Repo, checksum: str) -> Accounts:
    files = {}
    for name in SEEDED:
        data = ostree_repo.read_commit_file(repo, checksum, f"usr/etc/{name}")
        if data is not None:
            files[name] = data.decode()
    return Accounts(files)


def write_seed(accounts: Accounts, seed_dir: Path) -> Path:
    """The previous commit's files in `seed_dir`, for the bootstrap's setup hook."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for name, text in accounts.files.items():
        (seed_dir / name).write_text(text)
    return seed_dir


def check_stable_ids(
    previous: Accounts, rootfs: Path, *, check_passwd: str, check_groups: str
) -> None:
    """Fail when a user or group of the previous commit changed its id."""
    with Tree(rootfs) as tree:
        etc = "usr/etc" if tree.exists("usr/etc/passwd") else "etc"
        for name, key, what, check in (
            ("passwd", "check-passwd", "user", check_passwd),
            ("group", "check-groups", "group", check_groups),
        ):
            if check == "none":
                continue
            now = parse_ids(tree.read_text(f"{etc}/{name}") or "")
            for account, old in sorted(previous.ids(name).items()):
                new = now.get(account)
                if new is not None and new != old:
                    raise AccountsError(
                        f'{what} "{account}" changed its id from {old} to {new} since the'
                        f" previous commit; files it owns on machines would change hands"
                        f" (set `{key}: {{type: none}}` in the treefile to allow it)"
                    )


def _quoted(value: str) -> str:
    return f'"{value}"' if value else "-"


def sysusers_lines(passwd: str, group: str) -> list[str]:
    """sysusers.d lines for every group and user, with their ids (groups first, so
    that each user's primary group exists when the user line is read)."""
    lines = []
    for line in group.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            lines.append(f"g {fields[0]} {fields[2]}")
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not (fields[2].isdigit() and fields[3].isdigit()):
            continue
        name, uid, gid, gecos, home, shell = fields[0], *fields[2:7]
        gecos = gecos.replace('"', "")
        lines.append(f"u {name} {uid}:{gid} {_quoted(gecos)} {home or '-'} {shell or '-'}")
    return lines


def write_base_sysusers(tree: Tree, etc: str = "etc") -> int:
    """Write SYSUSERS_CONF from the tree's account files; return the number of lines."""
    lines = sysusers_lines(
        tree.read_text(f"{etc}/passwd") or "", tree.read_text(f"{etc}/group") or ""
    )
    if not lines:
        return 0
    tree.makedirs("usr/lib/sysusers.d")
    header = (
        "# The users and groups of this base commit, with their ids (apt-ostree compose):\n"
        "# systemd-sysusers adds those missing from a machine's own /etc.\n"
    )
    tree.write_text(SYSUSERS_CONF, header + "\n".join(lines) + "\n")
    return len(lines)
