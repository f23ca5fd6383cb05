"""Downloading a layer's packages into a checksum-verified cache."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import pytest

from apt_ostree.debian.fetch import FetchError
from apt_ostree.debian.packages import LayerPlan
from apt_ostree.debian.resolve import fetch_packages, resolve_layer
from apt_ostree.reporter import Reporter
from tests.fixtures.aptrepo import AptRepo, DebSpec, build_deb


def _plan(
    repo: AptRepo, tmp_path: Path, install: list[str], local_debs: list[Path] | None = None
) -> LayerPlan:
    status = tmp_path / "status"
    status.touch()
    return resolve_layer(
        [repo.sources_stanza()],
        status_file=status,
        arch="amd64",
        statedir=tmp_path / "apt-state",
        install=install,
        local_debs=local_debs or [],
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cachedir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_packages_are_downloaded_into_the_cache_in_plan_order(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["pkg-a"])
    paths = fetch_packages(plan, cachedir=cachedir)
    assert paths == [cachedir / "pkg-a_1.0_amd64.deb", cachedir / "pkg-b_1.0_amd64.deb"]
    for pkg, path in zip(plan.install, paths, strict=True):
        assert not path.is_symlink()
        assert _sha256(path) == pkg.sha256
    assert not list((cachedir / "partial").iterdir())


def test_a_second_fetch_uses_the_cache(apt_repo: AptRepo, tmp_path: Path, cachedir: Path) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    [first] = fetch_packages(plan, cachedir=cachedir)
    before = first.stat()
    stream = io.StringIO()
    [second] = fetch_packages(plan, cachedir=cachedir, reporter=Reporter(stream))
    after = second.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "Downloading" not in stream.getvalue()


def test_a_corrupted_cached_file_is_fetched_again(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    [path] = fetch_packages(plan, cachedir=cachedir)
    good = path.read_bytes()
    # Same size, other bytes: only the checksum can tell.
    path.write_bytes(bytes(b ^ 0xFF for b in good))
    [again] = fetch_packages(plan, cachedir=cachedir)
    assert again.read_bytes() == good


def test_a_truncated_cached_file_is_fetched_again(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    [path] = fetch_packages(plan, cachedir=cachedir)
    good = path.read_bytes()
    path.write_bytes(good[:100])
    assert fetch_packages(plan, cachedir=cachedir)[0].read_bytes() == good


def test_cache_only_without_the_package_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    with pytest.raises(FetchError) as e:
        fetch_packages(plan, cachedir=cachedir, cache_only=True)
    assert str(e.value) == 'package "hello-fixture" 2.0-1 is not in the cache (--cache-only)'


def test_cache_only_refuses_a_corrupted_cached_file(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    [path] = fetch_packages(plan, cachedir=cachedir)
    path.write_bytes(b"corrupt")
    with pytest.raises(FetchError, match="is not in the cache"):
        fetch_packages(plan, cachedir=cachedir, cache_only=True)


def test_cache_only_uses_the_cache(apt_repo: AptRepo, tmp_path: Path, cachedir: Path) -> None:
    plan = _plan(apt_repo, tmp_path, ["pkg-a"])
    paths = fetch_packages(plan, cachedir=cachedir)
    assert fetch_packages(plan, cachedir=cachedir, cache_only=True) == paths


def test_a_download_that_does_not_match_the_index_is_refused(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    tampered = dataclasses.replace(plan.install[0], sha256="0" * 64)
    with pytest.raises(FetchError) as e:
        fetch_packages(dataclasses.replace(plan, install=[tampered]), cachedir=cachedir)
    assert str(e.value) == (
        f'package "hello-fixture" 2.0-1 could not be downloaded from {tampered.uri}: '
        "it does not match the checksum of the signed index"
    )
    assert not (cachedir / "hello-fixture_2.0-1_amd64.deb").exists()
    assert not list((cachedir / "partial").iterdir())


def test_local_debs_are_used_where_they_are(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    deb = build_deb(DebSpec("local-tool", depends="pkg-b"), tmp_path / "local")
    plan = _plan(apt_repo, tmp_path, [], [deb])
    assert fetch_packages(plan, cachedir=cachedir) == [deb, cachedir / "pkg-b_1.0_amd64.deb"]


def test_download_progress_counts_bytes(
    http_apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(http_apt_repo, tmp_path, ["pkg-a"])
    stream = io.StringIO()
    fetch_packages(plan, cachedir=cachedir, reporter=Reporter(stream))
    total = sum(p.size for p in plan.install)
    lines = [line for line in stream.getvalue().splitlines() if "Downloading" in line]
    assert lines, stream.getvalue()
    assert lines[-1].endswith(
        f"Downloading packages (2/2): {total / 1000:.1f} kB / {total / 1000:.1f} kB"
    )


def test_an_unreachable_source_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, cachedir: Path
) -> None:
    plan = _plan(apt_repo, tmp_path, ["hello-fixture"])
    moved = dataclasses.replace(
        plan.install[0], uri="http://127.0.0.1:1/pool/main/hello-fixture_2.0-1_amd64.deb"
    )
    with pytest.raises(FetchError) as e:
        fetch_packages(dataclasses.replace(plan, install=[moved]), cachedir=cachedir)
    message = str(e.value)
    assert message.startswith('package "hello-fixture" 2.0-1 could not be downloaded from http://')
    assert "\n" not in message
