"""`apt-ostree compose tree` on bad input, against the local signed APT repository.

Each bad input is one `error:` line, a non-zero exit, and nothing written to REPO.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.aptrepo import AptRepo, DebSpec, build_deb
from tests.fixtures.sysroot import apt_ostree as run_cli

TOP = Path(__file__).resolve().parents[2]


def apt_ostree(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli(None, *args)


def write_treefile(path: Path, stanza: str, packages: list[str], **extra: object) -> Path:
    data: dict[str, object] = {
        "ref": "test/x86_64/fixture",
        "suite": "fixture",
        "packages": packages,
        "sources": [stanza],
        **extra,
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    assert needle in lines[-1], proc.stderr
    assert len([line for line in lines if line.startswith("error:")]) == 1


def test_dry_run_prints_the_resolved_set_and_writes_nothing(
    apt_repo: AptRepo, tmp_path: Path
) -> None:
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"])
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", tmp_path / "c",
                      "--dry-run")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["fixture-essential", "pkg-a", "pkg-b"]
    assert not repo.exists()


def test_dry_run_resolves_local_packages_with_their_dependencies(
    apt_repo: AptRepo, tmp_path: Path
) -> None:
    # Depends on pkg-b, which only the signed fixture repository has.
    build_deb(DebSpec("local-tool", "0.1.0", arch="all", depends="pkg-b"), tmp_path / "debs")
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-c"],
                        **{"local-packages": ["debs/local-tool_*_all.deb"]})  # fmt: skip
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo",
                      "--cachedir", tmp_path / "c", "--dry-run")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    resolved = [line.split()[:2] for line in proc.stdout.splitlines()]
    assert resolved == [["fixture-essential", "1.0"], ["local-tool", "0.1.0"], ["pkg-b", "1.0"],
                        ["pkg-c", "1.0"]]  # fmt: skip


def test_local_package_older_than_the_sources_one_is_an_error(
    apt_repo: AptRepo, tmp_path: Path
) -> None:
    build_deb(DebSpec("pkg-b", "0.9", files={"usr/share/pkg-b/old": "old\n"}), tmp_path / "debs")
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"],
                        **{"local-packages": ["debs/pkg-b_0.9_amd64.deb"]})  # fmt: skip
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo",
                      "--cachedir", tmp_path / "c", "--dry-run")  # fmt: skip
    assert_one_line_error(proc, 'local package "pkg-b" 0.9')
    assert "loses to version 1.0" in proc.stderr


def test_print_only_prints_the_merged_treefile_as_json(apt_repo: AptRepo, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("packages: [pkg-b]\n")
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"],
                        include="base.yaml")  # fmt: skip
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo", "--print-only")
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(proc.stdout)
    assert merged["packages"] == ["pkg-b", "pkg-a"]
    assert merged["ref"] == "test/x86_64/fixture"


def test_unknown_package_is_an_error(apt_repo: AptRepo, tmp_path: Path) -> None:
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["no-such-package"])
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", tmp_path / "c")
    assert_one_line_error(proc, '"no-such-package"')
    assert not repo.exists()


def test_unsigned_source_is_an_error(
    unsigned_apt_repo: AptRepo, apt_repo: AptRepo, tmp_path: Path
) -> None:
    stanza = unsigned_apt_repo.sources_stanza(signed_by=apt_repo.keyring)
    tf = write_treefile(tmp_path / "tf.json", stanza, ["pkg-a"])
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", tmp_path / "c")
    assert_one_line_error(proc, "not signed")
    assert not repo.exists()


def test_source_signed_by_another_key_is_an_error(
    apt_repo: AptRepo, wrong_keyring: Path, tmp_path: Path
) -> None:
    stanza = apt_repo.sources_stanza(signed_by=wrong_keyring)
    tf = write_treefile(tmp_path / "tf.json", stanza, ["pkg-a"])
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo",
                      "--cachedir", tmp_path / "c")  # fmt: skip
    assert_one_line_error(proc, "unknown key")


def test_unreachable_source_is_an_error(apt_repo: AptRepo, tmp_path: Path) -> None:
    stanza = apt_repo.sources_stanza(uri="http://127.0.0.1:1/")
    tf = write_treefile(tmp_path / "tf.json", stanza, ["pkg-a"])
    repo = tmp_path / "repo"
    proc = apt_ostree("compose", "tree", tf, "--repo", repo, "--cachedir", tmp_path / "c")
    assert_one_line_error(proc, "unreachable")
    assert not repo.exists()


def test_invalid_treefile_names_file_line_and_key(tmp_path: Path) -> None:
    tf = tmp_path / "bad.yaml"
    tf.write_text("ref: test/ref\npackages:\n  - pkg-a\npakages: [x]\n")
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo")
    assert_one_line_error(proc, 'bad.yaml:4: unknown key "pakages"')
    assert not (tmp_path / "repo").exists()


def test_ref_with_invalid_characters_is_an_error(apt_repo: AptRepo, tmp_path: Path) -> None:
    tf = tmp_path / "tf.yaml"
    tf.write_text("ref: 'debian/12 bad ref'\npackages: [pkg-a]\n")
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "repo")
    assert_one_line_error(proc, "tf.yaml:1")
    assert "ref" in proc.stderr
    assert not (tmp_path / "repo").exists()


def test_repo_that_is_not_a_repo_is_an_error_and_left_alone(
    apt_repo: AptRepo, tmp_path: Path
) -> None:
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"])
    notrepo = tmp_path / "notrepo"
    notrepo.mkdir()
    (notrepo / "precious.txt").write_text("keep me")
    proc = apt_ostree("compose", "tree", tf, "--repo", notrepo, "--cachedir", tmp_path / "c")
    assert_one_line_error(proc, "is not an OSTree repository")
    assert [p.name for p in notrepo.iterdir()] == ["precious.txt"]


def test_repo_that_is_a_file_is_an_error(apt_repo: AptRepo, tmp_path: Path) -> None:
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"])
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = apt_ostree("compose", "tree", tf, "--repo", afile)
    assert_one_line_error(proc, "not an OSTree repository")


@pytest.mark.parametrize("pair", ["novalue", "=x"])
def test_bad_metadata_string_is_an_error(apt_repo: AptRepo, tmp_path: Path, pair: str) -> None:
    tf = write_treefile(tmp_path / "tf.json", apt_repo.sources_stanza(), ["pkg-a"])
    proc = apt_ostree("compose", "tree", tf, "--repo", tmp_path / "r",
                      "--add-metadata-string", pair)  # fmt: skip
    assert_one_line_error(proc, "KEY=VALUE")


def test_postprocess_then_commit_an_existing_tree(tmp_path: Path) -> None:
    from tests.fixtures.trees import make_tree

    root = make_tree(tmp_path / "root", kernel="6.1.0-fake")
    proc = apt_ostree("compose", "postprocess", root)
    assert proc.returncode == 0, proc.stderr
    assert "kernel 6.1.0-fake" in proc.stdout
    repo = tmp_path / "repo"
    idfile = tmp_path / "commitid"
    proc = apt_ostree("compose", "commit", root, "--repo", repo, "--ref", "custom/base",
                      "--add-metadata-string", "version=7",
                      "--write-commitid-to", idfile)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    csum = idfile.read_text()
    assert f"Wrote commit: {csum}" in proc.stdout
    out = subprocess.run(["ostree", f"--repo={repo}", "show", csum], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "Version: 7" in out


def test_postprocess_of_a_missing_tree_is_an_error(tmp_path: Path) -> None:
    proc = apt_ostree("compose", "postprocess", tmp_path / "nothing")
    assert_one_line_error(proc, "is not a directory")
