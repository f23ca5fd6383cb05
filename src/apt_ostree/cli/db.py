"""`db list|diff|version`: packages from commit metadata, no checkout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.client.local import open_sysroot

if TYPE_CHECKING:
    from apt_ostree.ostree import OSTree
    from apt_ostree.system.db import Package, PackageDiff, Revision
    from apt_ostree.system.sysroot import Sysroot

FORMATS = ("block", "diff", "json")


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="query the packages of commits (no checkout)")
    dsub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    def add_repo(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--repo", type=Path, metavar="PATH",
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


class _Context:
    """The repository revisions are looked up in; the sysroot only when a default needs it."""

    def __init__(self, args: argparse.Namespace) -> None:
        from apt_ostree.system.db import open_repo

        self._args = args
        self._sysroot: Sysroot | None = None
        self.repo: OSTree.Repo = open_repo(args.repo) if args.repo else self.sysroot.repo

    @property
    def sysroot(self) -> Sysroot:
        if self._sysroot is None:
            self._sysroot = open_sysroot(self._args.sysroot)
        return self._sysroot


def _header(label: str, rev: Revision) -> str:
    if rev.desc == rev.checksum:
        return f"{label}{rev.checksum}"
    return f"{label}{rev.desc} ({rev.checksum})"


def cmd_list(args: argparse.Namespace) -> int:
    from apt_ostree.system.db import (
        commit_packages,
        current_revision,
        is_revision,
        match_packages,
        resolve_revision,
    )

    ctx = _Context(args)
    # As rpm-ostree: arguments are revisions up to the first that is not one.
    revs = []
    for i, arg in enumerate(args.args):
        if not is_revision(ctx.repo, arg):
            patterns = args.args[i:]
            break
        revs.append(resolve_revision(ctx.repo, arg))
    else:
        patterns = []
    if not revs:
        revs = [current_revision(ctx.sysroot, ctx.repo)]
    for rev in revs:
        print(_header("ostree commit: ", rev))
        for p in match_packages(commit_packages(ctx.repo, rev.checksum), patterns):
            print(f" {p.nevra}")
    return 0


def _version(p: Package, other: Package) -> str:
    """The version, with the architecture when that is what changed."""
    return p.version if p.arch == other.arch else f"{p.version} ({p.arch})"


def format_diff_block(diff: PackageDiff) -> list[str]:
    """rpm-ostree's multi-line blocks: Upgraded, Downgraded, Removed, Added."""
    lines = []
    for title, pairs in (("Upgraded", diff.upgraded), ("Downgraded", diff.downgraded)):
        if pairs:
            lines.append(f"{title}:")
            lines += [f"  {diff.label(a)} {_version(a, b)} -> {_version(b, a)}" for a, b in pairs]
    for title, singles in (("Removed", diff.removed), ("Added", diff.added)):
        if singles:
            lines.append(f"{title}:")
            lines += [f"  {p.nevra}" for p in singles]
    return lines


def format_diff_lines(diff: PackageDiff) -> list[str]:
    """rpm-ostree's `--format=diff`, by package name: `!old` `=new`, `-removed`, `+added`."""
    entries: list[tuple[Package, list[str]]] = [
        *((a, [f"!{a.nevra}", f"={b.nevra}"]) for a, b in diff.upgraded + diff.downgraded),
        *((p, [f"-{p.nevra}"]) for p in diff.removed),
        *((p, [f"+{p.nevra}"]) for p in diff.added),
    ]
    return [line for _, lines in sorted(entries, key=lambda e: e[0]) for line in lines]


def diff_json(old: Revision, new: Revision, diff: PackageDiff) -> dict[str, Any]:
    """rpm-ostree's JSON: pkgdiff entries are [name, type, {PreviousPackage, NewPackage}],
    type 0 added, 1 removed, 2 upgraded, 3 downgraded; packages are [name, version, arch]."""
    from apt_ostree.system.db import diff_entries

    pkgdiff = []
    for name, kind, previous, new_pkg in diff_entries(diff):
        detail = {}
        if previous is not None:
            detail["PreviousPackage"] = [previous.name, previous.version, previous.arch]
        if new_pkg is not None:
            detail["NewPackage"] = [new_pkg.name, new_pkg.version, new_pkg.arch]
        pkgdiff.append([name, kind, detail])
    return {
        "ostree-commit-from": old.checksum,
        "ostree-commit-to": new.checksum,
        "pkgdiff": pkgdiff,
        "advisories": [],
    }


def cmd_diff(args: argparse.Namespace) -> int:
    from apt_ostree.system.db import (
        current_revision,
        default_diff,
        diff_commits,
        resolve_revision,
    )

    ctx = _Context(args)
    if args.to_rev is not None:
        old = resolve_revision(ctx.repo, args.from_rev)
        new = resolve_revision(ctx.repo, args.to_rev)
    elif args.from_rev is not None:
        new = resolve_revision(ctx.repo, args.from_rev)
        old = current_revision(ctx.sysroot, ctx.repo, base=args.base)
    else:
        old, new = default_diff(ctx.sysroot, ctx.repo, base=args.base)
    diff = diff_commits(ctx.repo, old.checksum, new.checksum)
    if args.format == "json":
        json.dump(diff_json(old, new, diff), sys.stdout, indent=2)
        print()
        return 0
    print(_header("ostree diff commit from: ", old))
    print(_header("ostree diff commit to:   ", new))
    lines = format_diff_lines(diff) if args.format == "diff" else format_diff_block(diff)
    for line in lines:
        print(line)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from apt_ostree.system.db import (
        commit_packages,
        current_revision,
        dpkg_db_version,
        resolve_revision,
    )

    ctx = _Context(args)
    revs = [resolve_revision(ctx.repo, rev) for rev in args.revs]
    if not revs:
        revs = [current_revision(ctx.sysroot, ctx.repo)]
    for rev in revs:
        print(_header("ostree commit: ", rev))
        print(f"  dpkgdbv is: {dpkg_db_version(commit_packages(ctx.repo, rev.checksum))}")
    return 0
