"""resolve_layer with `replace_local`: a local .deb replacing a base package (override replace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.errors import ResolveError
from tests.fixtures.aptrepo import AptRepo, DebSpec, build_deb
from tests.integration.test_resolve_layer import PKG_B, _layer, write_status


@pytest.fixture
def statedir(tmp_path: Path) -> Path:
    return tmp_path / "apt-state"


def test_a_local_deb_replaces_the_base_package_of_its_name(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "2.0"), tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    plan = _layer(apt_repo, base, statedir, [], replace_local=[deb])
    [entry] = plan.install
    assert (entry.name, entry.version, entry.replaces) == ("pkg-b", "2.0", "1.0")
    assert entry.local_path == str(deb) and entry.requested


def test_a_replacement_may_be_older_than_the_base(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "0.9"), tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    [entry] = _layer(apt_repo, base, statedir, [], replace_local=[deb]).install
    assert (entry.version, entry.replaces) == ("0.9", "1.0")


def test_a_replacement_comes_with_its_new_dependencies(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "2.0", depends="hello-fixture"), tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    plan = _layer(apt_repo, base, statedir, [], replace_local=[deb])
    assert [(p.name, p.replaces) for p in plan.install] == [
        ("hello-fixture", None),
        ("pkg-b", "1.0"),
    ]


def test_replacing_a_package_that_is_not_in_the_base_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "2.0"), tmp_path / "local")
    with pytest.raises(ResolveError, match=r'^package "pkg-b" is not in the base commit'):
        _layer(apt_repo, write_status(tmp_path / "status"), statedir, [], replace_local=[deb])


def test_replacing_by_the_base_version_is_an_error_or_inactive(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(PKG_B, tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    with pytest.raises(ResolveError, match="already the version in the base commit"):
        _layer(apt_repo, base, statedir, [], replace_local=[deb])
    plan = _layer(apt_repo, base, statedir, [], replace_local=[deb], allow_inactive=True)
    assert plan.install == []


def test_a_replacement_that_breaks_a_base_package_names_it(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "2.0"), tmp_path / "local")
    pinned = DebSpec("pins-b", depends="pkg-b (= 1.0)")
    base = write_status(tmp_path / "status", PKG_B, pinned)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], replace_local=[deb])
    assert str(e.value) == (
        'package "pkg-b" 2.0 (local) cannot replace 1.0 in the base commit: "pins-b" 1.0 '
        "in the base commit depends on it (Depends: pkg-b (= 1.0))"
    )
