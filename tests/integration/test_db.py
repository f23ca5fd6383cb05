"""`apt-ostree db list|diff|version`: packages from commit metadata."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from apt_ostree.ostree import repo as ostree_repo
from tests.fixtures.deployments import deploy_version, pull_version
from tests.fixtures.sysroot import REF, VERSIONS, FixtureRepo, SysrootFixture, apt_ostree


def test_db_diff_block_shows_an_upgrade(fixture_repo: FixtureRepo) -> None:
    v1, v2 = fixture_repo.commits["1"], fixture_repo.commits["2"]
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, v1, v2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree diff commit from: {v1}\n"
        f"ostree diff commit to:   {v2}\n"
        "Upgraded:\n"
        "  pkg-b 1.0 -> 2.0\n"
    )


def test_db_diff_block_shows_removed_and_added_packages(fixture_repo: FixtureRepo) -> None:
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, f"{REF}", f"{REF}^^")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("Downgraded:\n  pkg-b 2.0 -> 1.0\nRemoved:\n  pkg-c_1.0_amd64\n")
    assert proc.stdout.startswith(f"ostree diff commit from: {REF} ({fixture_repo.commits['3']})\n")


def test_db_diff_format_diff_marks_added_packages(fixture_repo: FixtureRepo) -> None:
    v2, v3 = fixture_repo.commits["2"], fixture_repo.commits["3"]
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, "--format=diff", v2, v3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == ["+pkg-c_1.0_amd64"]
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, "-F", "diff", v3, v2[:10])
    assert proc.stdout.splitlines()[2:] == ["-pkg-c_1.0_amd64"]


def test_db_diff_json_uses_rpm_ostrees_keys(fixture_repo: FixtureRepo) -> None:
    v1, v3 = fixture_repo.commits["1"], fixture_repo.commits["3"]
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, "--format", "json", v1, v3)
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)
    assert diff["ostree-commit-from"] == v1 and diff["ostree-commit-to"] == v3
    assert diff["advisories"] == []
    assert diff["pkgdiff"] == [
        ["pkg-c", 0, {"NewPackage": ["pkg-c", "1.0", "amd64"]}],
        ["pkg-b", 2, {"PreviousPackage": ["pkg-b", "1.0", "amd64"],
                      "NewPackage": ["pkg-b", "2.0", "amd64"]}],
    ]  # fmt: skip


def test_db_diff_without_revisions_compares_rollback_and_default_deployments(
    sysroot: SysrootFixture,
) -> None:
    v1, v2 = sysroot.repo.commits["1"], deploy_version(sysroot, "2")
    proc = apt_ostree(sysroot.path, "db", "diff")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree diff commit from: rollback deployment ({v1})\n"
        f"ostree diff commit to:   default deployment ({v2})\n"
        "Upgraded:\n"
        "  pkg-b 1.0 -> 2.0\n"
    )


def test_db_diff_with_one_revision_starts_from_the_default_deployment(
    sysroot: SysrootFixture,
) -> None:
    v3 = pull_version(sysroot, "3")
    proc = apt_ostree(sysroot.path, "db", "diff", "--format=diff", v3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"ostree diff commit from: default deployment ({sysroot.repo.commits['1']})",
        f"ostree diff commit to:   {v3}",
        "!pkg-b_1.0_amd64",
        "=pkg-b_2.0_amd64",
        "+pkg-c_1.0_amd64",
    ]


def test_db_diff_with_a_single_deployment_is_an_error(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "db", "diff")
    assert proc.returncode == 1
    assert proc.stderr == "error: no pending or rollback deployment to diff against\n"


@pytest.mark.parametrize(
    ("rev", "error"),
    [
        ("nosuchref", 'unknown revision "nosuchref": not a commit checksum, checksum prefix'
         " or ref in the repository"),
        ("0" * 64, f'commit {"0" * 64} ("{"0" * 64}") is not in the repository'),
    ],
)  # fmt: skip
def test_db_unknown_revision_is_a_one_line_error(
    fixture_repo: FixtureRepo, rev: str, error: str
) -> None:
    proc = apt_ostree(None, "db", "diff", "--repo", fixture_repo.path, fixture_repo.ref, rev)
    assert proc.returncode == 1
    assert proc.stderr == f"error: {error}\n"


def test_db_list_lists_the_packages_of_the_default_deployment(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "db", "list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree commit: default deployment ({sysroot.repo.commits['1']})\n"
        " base-files_12.4_amd64\n pkg-a_1.0_amd64\n pkg-b_1.0_amd64\n"
    )


def test_db_list_takes_revisions_then_package_globs(fixture_repo: FixtureRepo) -> None:
    v1, v3 = fixture_repo.commits["1"], fixture_repo.commits["3"]
    proc = apt_ostree(
        None, "db", "list", "--repo", fixture_repo.path, v1[:8], fixture_repo.ref, "pkg-[bc]"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree commit: {v1[:8]} ({v1})\n pkg-b_1.0_amd64\n"
        f"ostree commit: {fixture_repo.ref} ({v3})\n pkg-b_2.0_amd64\n pkg-c_1.0_amd64\n"
    )


def _expected_dbv(version: str) -> str:
    lines = sorted(f"{name}_{v}_amd64\n" for name, v in VERSIONS[version].items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_db_version_is_the_sha256_of_the_sorted_package_list(fixture_repo: FixtureRepo) -> None:
    v1, v2 = fixture_repo.commits["1"], fixture_repo.commits["2"]
    proc = apt_ostree(None, "db", "version", "--repo", fixture_repo.path, v1, v2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree commit: {v1}\n  dpkgdbv is: {_expected_dbv('1')}\n"
        f"ostree commit: {v2}\n  dpkgdbv is: {_expected_dbv('2')}\n"
    )


def test_db_version_matches_the_documented_dpkg_query_recipe(
    fixture_repo: FixtureRepo, tmp_path: Path
) -> None:
    v3 = fixture_repo.commits["3"]
    db = tmp_path / "database"
    subprocess.run(
        ["ostree", f"--repo={fixture_repo.path}", "checkout", "-U",
         "--subpath=/usr/share/dpkg/database", v3, str(db)],
        check=True,
    )  # fmt: skip
    recipe = (
        'dpkg-query --admindir="$1" -W'
        " -f='${db:Status-Abbrev}${Package}_${Version}_${Architecture}\\n'"
        " | sed -n 's/^ii //p' | LC_ALL=C sort | sha256sum"
    )
    shell = subprocess.run(
        ["sh", "-c", recipe, "sh", str(db)], capture_output=True, text=True, check=True
    )
    proc = apt_ostree(None, "db", "version", "--repo", fixture_repo.path, v3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == f"  dpkgdbv is: {shell.stdout.split()[0]}"


def test_db_version_defaults_to_the_default_deployment(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "db", "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"ostree commit: default deployment ({sysroot.repo.commits['1']})\n"
        f"  dpkgdbv is: {_expected_dbv('1')}\n"
    )


def test_db_commit_without_a_package_list_is_an_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tree = tmp_path / "tree"
    (tree / "usr").mkdir(parents=True)
    ostree_repo.open_repo(repo, create_mode="archive")
    checksum = subprocess.run(
        ["ostree", f"--repo={repo}", "commit", "-b", "plain", str(tree)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    proc = apt_ostree(None, "db", "list", "--repo", repo, "plain")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: commit {checksum} has no package list (apt-ostree.packages metadata);"
        " it was not composed by apt-ostree\n"
    )
