"""Reading, merging and writing lockfiles (compose/lockfile.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apt_ostree.compose.lockfile import (
    load_lockfiles,
    lockfile_json,
    read_lockfile,
    write_lockfile,
)
from apt_ostree.debian.packages import IndexDigests, LockedPackage, PackageInfo
from apt_ostree.errors import LockfileError

DIGEST = "ab" * 32


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_written_lockfile_reads_back_as_the_same_pins(tmp_path: Path) -> None:
    packages = [PackageInfo("tool", "1:2.0-1", "all"), PackageInfo("app", "1.0", "amd64")]
    digests = IndexDigests({"tool": DIGEST, "app": "cd" * 32}, index_date=1_700_000_000)
    write_lockfile(tmp_path / "lock.json", lockfile_json(packages, digests))
    lock = read_lockfile(tmp_path / "lock.json")
    assert lock.packages == {
        "app": LockedPackage("app", "1.0", "amd64", "cd" * 32),
        "tool": LockedPackage("tool", "1:2.0-1", "all", DIGEST),
    }
    assert lock.source_date_epoch == 1_700_000_000


def test_later_lockfiles_replace_entries_and_the_epoch(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", {
        "packages": {"app": {"version": "1.0", "arch": "amd64", "digest": f"sha256:{DIGEST}"},
                     "lib": {"version": "1.0"}},
        "metadata": {"source-date-epoch": 1},
    })  # fmt: skip
    second = write(tmp_path / "b.json", {
        "packages": {"lib": {"version": "2.0"}}, "metadata": {"source-date-epoch": 2},
    })  # fmt: skip
    third = write(tmp_path / "c.json", {"packages": {}})
    lock = load_lockfiles([first, second, third])
    assert lock.packages == {
        "app": LockedPackage("app", "1.0", "amd64", DIGEST),
        "lib": LockedPackage("lib", "2.0"),
    }
    assert lock.source_date_epoch == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "lock.json: not valid JSON"),
        ("[]", "lock.json: expected a JSON object"),
        ('{"pakages": {}}', 'lock.json: key "pakages": unknown key'),
        ('{"metadata": {}}', 'key "packages": expected a mapping of package names'),
        ('{"packages": {"Bad_Name": {"version": "1"}}}',
         'key "packages.Bad_Name": not a Debian package name'),
        ('{"packages": {"app": "1.0"}}', 'key "packages.app": expected a mapping'),
        ('{"packages": {"app": {"version": "1.0", "evra": "x"}}}',
         'key "packages.app.evra": unknown key'),
        ('{"packages": {"app": {"version": 1}}}',
         'key "packages.app.version": expected a Debian version string'),
        ('{"packages": {"app": {"version": "1.0", "arch": "AMD 64"}}}',
         'key "packages.app.arch": expected an architecture name'),
        ('{"packages": {"app": {"version": "1.0", "digest": "md5:00"}}}',
         'key "packages.app.digest": expected "sha256:" and 64 hex digits'),
        ('{"packages": {}, "metadata": {"source-date-epoch": "yesterday"}}',
         'key "metadata.source-date-epoch": expected a non-negative integer'),
        ('{"packages": {}, "metadata": {"source-date-epoch": true}}',
         'key "metadata.source-date-epoch": expected a non-negative integer'),
        ('{"packages": {}, "metadata": {"built": 1}}', 'key "metadata.built": unknown key'),
    ],
)  # fmt: skip
def test_invalid_lockfile_names_the_file_and_the_key(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "lock.json").write_text(content)
    with pytest.raises(LockfileError) as e:
        read_lockfile(tmp_path / "lock.json")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_lockfile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match=r"missing\.json: cannot read it"):
        load_lockfiles([tmp_path / "missing.json"])


def test_writing_into_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    digests = IndexDigests({}, index_date=None)
    with pytest.raises(LockfileError, match="cannot write the lockfile"):
        write_lockfile(tmp_path / "no" / "lock.json", lockfile_json([], digests))
