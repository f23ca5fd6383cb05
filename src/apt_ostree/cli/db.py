"""`db list|diff|version`: packages from commit metadata, no checkout; and the
renderers of package diffs that other commands print too."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from apt_ostree.client import open_client

FORMATS = ("block", "diff", "json")
# rpm-ostree's RpmOstreePackageDiffTypes
ADDED, REMOVED, UPGRADED, DOWNGRADED = 0, 1, 2, 3

# A package as the client gives it: [name, version, arch].
Package = list[str]


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="query the packages of commits (no checkout)")
    dsub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    def add_repo(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-r", "--repo", type=Path, metavar="PATH",
            help="look revisions up in this repository (default: the sysroot's)",
        )  # fmt: skip

    lst = dsub.add_parser(
        "list", help="list the packages of commits",
        description="List the packages of each REV (default: the booted deployment;"
        " offline, the default deployment), only those matching PKG globs if given.",
    )  # fmt: skip
    lst.add_argument("args", nargs="*", metavar="REV... [PKG...]")
    add_repo(lst)
    lst.set_defaults(func=cmd_list)

    diff = dsub.add_parser(
        "diff", help="show the package changes between two commits",
        description="Without revisions: booted -> pending deployment if there is one, else"
        " rollback -> booted (offline: rollback -> default deployment). With one: booted"
        " (offline: default) deployment -> REV.",
    )  # fmt: skip
    diff.add_argument("from_rev", nargs="?", metavar="FROM")
    diff.add_argument("to_rev", nargs="?", metavar="TO")
    diff.add_argument(
        "-F", "--format", choices=FORMATS, default="block", help="output format (default: block)"
    )
    diff.add_argument(
        "--base", action="store_true", help="diff deployments' base commits, not layered ones"
    )
    diff.add_argument(
        "-c", "--changelogs", action="store_true",
        help="also print the Debian changelog entries of each upgraded package",
    )  # fmt: skip
    add_repo(diff)
    diff.set_defaults(func=cmd_diff)

    version = dsub.add_parser(
        "version", help="print the package database version of commits",
        description="The version is the sha256 of the sorted name_version_arch lines"
        " of the installed packages (see docs/db.md).",
    )  # fmt: skip
    version.add_argument("revs", nargs="*", metavar="REV")
    add_repo(version)
    version.set_defaults(func=cmd_version)


# -- package diffs (the plain form of system.db.diff_to_json) ----------------------------


def nevra(p: Package) -> str:
    """One token for the package, as rpm-ostree prints NEVRAs: name_version_arch."""
    return f"{p[0]}_{p[1]}_{p[2]}"


def _label(diff: dict[str, Any], p: Package) -> str:
    return f"{p[0]}:{p[2]}" if p[0] in diff["multiarch"] else p[0]


def _version(p: Package, other: Package) -> str:
    """The version, with the architecture when that is what changed."""
    return p[1] if p[2] == other[2] else f"{p[1]} ({p[2]})"


def diff_summary(diff: dict[str, Any]) -> str:
    counts = [(len(diff[k]), k) for k in ("upgraded", "downgraded", "removed", "added")]
    return ", ".join(f"{n} {what}" for n, what in counts if n) or "no package changes"


def format_diff_block(diff: dict[str, Any]) -> list[str]:
    """rpm-ostree's multi-line blocks: Upgraded, Downgraded, Removed, Added."""
    lines = []
    for title, key in (("Upgraded", "upgraded"), ("Downgraded", "downgraded")):
        if diff[key]:
            lines.append(f"{title}:")
            lines += [
                f"  {_label(diff, a)} {_version(a, b)} -> {_version(b, a)}" for a, b in diff[key]
            ]
    for title, key in (("Removed", "removed"), ("Added", "added")):
        if diff[key]:
            lines.append(f"{title}:")
            lines += [f"  {nevra(p)}" for p in diff[key]]
    return lines


def format_diff_lines(diff: dict[str, Any]) -> list[str]:
    """rpm-ostree's `--format=diff`, by package name: `!old` `=new`, `-removed`, `+added`."""
    entries: list[tuple[Package, list[str]]] = [
        *((a, [f"!{nevra(a)}", f"={nevra(b)}"]) for a, b in diff["upgraded"] + diff["downgraded"]),
        *((p, [f"-{nevra(p)}"]) for p in diff["removed"]),
        *((p, [f"+{nevra(p)}"]) for p in diff["added"]),
    ]
    return [line for _, lines in sorted(entries, key=lambda e: e[0]) for line in lines]


def diff_json(old: dict[str, str], new: dict[str, str], diff: dict[str, Any]) -> dict[str, Any]:
    """rpm-ostree's JSON: pkgdiff entries are [name, type, {PreviousPackage, NewPackage}],
    type 0 added, 1 removed, 2 upgraded, 3 downgraded; packages are [name, version, arch]."""
    entries: list[tuple[str, int, Package | None, Package | None]] = [
        *((a[0], UPGRADED, a, b) for a, b in diff["upgraded"]),
        *((a[0], DOWNGRADED, a, b) for a, b in diff["downgraded"]),
        *((p[0], REMOVED, p, None) for p in diff["removed"]),
        *((p[0], ADDED, None, p) for p in diff["added"]),
    ]
    pkgdiff = []
    for name, kind, previous, new_pkg in sorted(entries, key=lambda e: (e[1], e[0])):
        detail = {}
        if previous is not None:
            detail["PreviousPackage"] = list(previous)
        if new_pkg is not None:
            detail["NewPackage"] = list(new_pkg)
        pkgdiff.append([name, kind, detail])
    return {
        "ostree-commit-from": old["checksum"],
        "ostree-commit-to": new["checksum"],
        "pkgdiff": pkgdiff,
        "advisories": [],
    }


# -- the commands ---------------------------------------------------------------------


def _header(label: str, rev: dict[str, str]) -> str:
    if rev["desc"] == rev["checksum"]:
        return f"{label}{rev['checksum']}"
    return f"{label}{rev['desc']} ({rev['checksum']})"


def cmd_list(args: argparse.Namespace) -> int:
    for rev in open_client(args.sysroot).db_list(args.args, args.repo):
        print(_header("ostree commit: ", rev))
        for p in rev["packages"]:
            print(f" {p}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    found = open_client(args.sysroot).db_diff(
        args.from_rev, args.to_rev, base=args.base, repo=args.repo, changelogs=args.changelogs
    )
    old, new, diff = found["from"], found["to"], found["diff"]
    if args.format == "json":
        json.dump(diff_json(old, new, diff), sys.stdout, indent=2)
        print()
        return 0
    print(_header("ostree diff commit from: ", old))
    print(_header("ostree diff commit to:   ", new))
    lines = format_diff_lines(diff) if args.format == "diff" else format_diff_block(diff)
    for line in lines:
        print(line)
    for name, text in sorted(found.get("changelogs", {}).items()):
        print(f"\nChangelog of {name}:" if text else f"\nChangelog of {name}: none in the commit")
        for entry in (text or "").splitlines():
            print(f"  {entry}".rstrip())
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    for rev in open_client(args.sysroot).db_version(args.revs, args.repo):
        print(_header("ostree commit: ", rev))
        print(f"  dpkgdbv is: {rev['dpkgdbv']}")
    return 0
