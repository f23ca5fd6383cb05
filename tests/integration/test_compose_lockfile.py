"""Lockfiles: `compose tree --ex-write-lockfile-to`, `--ex-lockfile`, `--ex-lockfile-strict`.

A signed local repository first holds app 1.0 (which depends on lib) and lib
1.0; then it gains app 2.0 and lib 2.0, as a Debian mirror gains a point
release. The resolution is what `--dry-run` prints; tests/e2e/test_compose_debian.py
composes a real tree from a lockfile.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.aptrepo import (
    AptRepo,
    DebSpec,
    SigningKey,
    publish_repo,
)
from tests.integration.test_compose_cli import apt_ostree, assert_one_line_error, write_treefile

FIRST = (
    DebSpec("app", "1.0", depends="lib (>= 1.0)"),
    DebSpec("lib", "1.0"),
    DebSpec("tool", "1.0", arch="all"),
)
# The point release: newer app and lib; app 2.0 needs a package 1.0 did not.
NEWER = (
    DebSpec("app", "2.0", depends="lib (>= 2.0), newdep"),
    DebSpec("lib", "2.0"),
    DebSpec("newdep", "1.0"),
)


@pytest.fixture
def repo(tmp_path: Path, signing_key: SigningKey) -> AptRepo:
    return publish_repo(FIRST, tmp_path / "repo", signing_key)


def dry_run(tmp_path: Path, repo: AptRepo, *args: str | Path) -> list[list[str]]:
    tf = write_treefile(tmp_path / "tf.json", repo.sources_stanza(), ["app", "tool"])
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "ostree",
                      "--cachedir", tmp_path / "cache", "--dry-run", *args)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines()]


def compose_error(tmp_path: Path, repo: AptRepo, *args: str | Path) -> Any:
    tf = write_treefile(tmp_path / "tf.json", repo.sources_stanza(), ["app", "tool"])
    return apt_ostree("compose", "tree", tf, "--repo", tmp_path / "ostree",
                      "--cachedir", tmp_path / "cache", *args)  # fmt: skip


def write_lock(tmp_path: Path, repo: AptRepo, name: str = "lock.json") -> dict[str, Any]:
    dry_run(tmp_path, repo, "--ex-write-lockfile-to", tmp_path / name)
    data: dict[str, Any] = json.loads((tmp_path / name).read_text())
    return data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_written_lockfile_has_version_arch_and_sha256_of_every_deb(
    repo: AptRepo, tmp_path: Path
) -> None:
    lock = write_lock(tmp_path, repo)
    pool = {deb.name: deb for deb in repo.debs}
    assert lock["packages"] == {
        "app": {"version": "1.0", "arch": "amd64",
                "digest": f"sha256:{sha256(pool['app_1.0_amd64.deb'])}"},
        "lib": {"version": "1.0", "arch": "amd64",
                "digest": f"sha256:{sha256(pool['lib_1.0_amd64.deb'])}"},
        "tool": {"version": "1.0", "arch": "all",
                 "digest": f"sha256:{sha256(pool['tool_1.0_all.deb'])}"},
    }  # fmt: skip
    # The newest Date: of the sources' Release files.
    release = (repo.path / "dists" / repo.suite / "Release").read_text()
    date = next(line for line in release.splitlines() if line.startswith("Date:"))
    assert lock["metadata"]["source-date-epoch"] == int(
        email.utils.parsedate_to_datetime(date.removeprefix("Date:").strip()).timestamp()
    )
    assert lock["metadata"]["generated"].endswith("Z")


def test_lockfile_compose_keeps_the_locked_set_after_the_sources_gain_newer_versions(
    repo: AptRepo, tmp_path: Path, signing_key: SigningKey
) -> None:
    locked = dry_run(tmp_path, repo, "--ex-write-lockfile-to", tmp_path / "lock.json")
    publish_repo(FIRST + NEWER, repo.path, signing_key)
    assert dry_run(tmp_path, repo) == [
        ["app", "2.0", "amd64"], ["lib", "2.0", "amd64"], ["newdep", "1.0", "amd64"],
        ["tool", "1.0", "all"],
    ]  # fmt: skip
    assert dry_run(tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json") == locked
    assert locked == [["app", "1.0", "amd64"], ["lib", "1.0", "amd64"], ["tool", "1.0", "all"]]
    strict = ("--ex-lockfile", tmp_path / "lock.json", "--ex-lockfile-strict")
    assert dry_run(tmp_path, repo, *strict) == locked


def test_a_locked_version_the_sources_lost_is_an_error_naming_it(
    repo: AptRepo, tmp_path: Path, signing_key: SigningKey
) -> None:
    write_lock(tmp_path, repo)
    # The mirror moved on: 1.0 of lib and app are gone.
    publish_repo((NEWER[0], NEWER[1], NEWER[2], FIRST[2]), repo.path, signing_key)
    proc = compose_error(tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json")
    assert_one_line_error(
        proc, 'package "app" 1.0 (amd64) of the lockfile is not available from the sources'
    )
    assert 'package "lib" 1.0 (amd64) of the lockfile is not available' in proc.stderr
    assert not (tmp_path / "ostree").exists()


def test_a_locked_deb_with_another_checksum_is_an_error(repo: AptRepo, tmp_path: Path) -> None:
    lock = write_lock(tmp_path, repo)
    lock["packages"]["lib"]["digest"] = "sha256:" + "0" * 64
    (tmp_path / "lock.json").write_text(json.dumps(lock))
    proc = compose_error(tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json")
    assert_one_line_error(proc, 'package "lib" 1.0 (amd64) of the lockfile has another .deb')
    assert "the lockfile says " + "0" * 64 in proc.stderr


def test_strict_refuses_a_package_the_lockfile_does_not_name(repo: AptRepo, tmp_path: Path) -> None:
    lock = write_lock(tmp_path, repo)
    del lock["packages"]["lib"]
    (tmp_path / "lock.json").write_text(json.dumps(lock))
    # Not strict: lib is resolved freely.
    assert ["lib", "1.0", "amd64"] in dry_run(
        tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json"
    )
    proc = compose_error(tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json",
                         "--ex-lockfile-strict")  # fmt: skip
    assert_one_line_error(proc, '"lib" 1.0 (amd64) not in the lockfile (--ex-lockfile-strict')


def test_a_later_lockfile_overrides_an_earlier_one(
    repo: AptRepo, tmp_path: Path, signing_key: SigningKey
) -> None:
    write_lock(tmp_path, repo, "base.json")
    publish_repo(FIRST + NEWER, repo.path, signing_key)
    override = {"packages": {"lib": {"version": "2.0"}}}
    (tmp_path / "override.json").write_text(json.dumps(override))
    resolved = dry_run(tmp_path, repo, "--ex-lockfile", tmp_path / "base.json",
                       "--ex-lockfile", tmp_path / "override.json")  # fmt: skip
    assert resolved == [["app", "1.0", "amd64"], ["lib", "2.0", "amd64"], ["tool", "1.0", "all"]]


def test_strict_without_a_lockfile_is_an_error(repo: AptRepo, tmp_path: Path) -> None:
    proc = compose_error(tmp_path, repo, "--ex-lockfile-strict")
    assert_one_line_error(proc, "--ex-lockfile-strict needs --ex-lockfile")


def test_invalid_lockfile_is_one_line_error_naming_file_and_key(
    repo: AptRepo, tmp_path: Path
) -> None:
    (tmp_path / "lock.json").write_text('{"packages": {"app": {"version": 1}}}')
    proc = compose_error(tmp_path, repo, "--ex-lockfile", tmp_path / "lock.json")
    assert_one_line_error(proc, 'lock.json: key "packages.app.version": expected a Debian version')
    assert not (tmp_path / "cache").exists()
