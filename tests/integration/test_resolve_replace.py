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


# -- replace=NAME[=VERSION]: the version comes from the sources -----------------------

OLD_HELLO = DebSpec("hello-fixture", "1.0")  # the sources have 2.0-1


def test_a_name_is_replaced_by_the_newer_version_of_the_sources(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", OLD_HELLO)
    [entry] = _layer(apt_repo, base, statedir, [], replace=["hello-fixture"]).install
    assert (entry.name, entry.version, entry.replaces) == ("hello-fixture", "2.0-1", "1.0")
    assert entry.local_path is None and entry.requested
    assert entry.uri.endswith("/pool/main/hello-fixture_2.0-1_amd64.deb")


def test_a_pinned_version_may_be_older_than_the_base(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("hello-fixture", "3.0"))
    [entry] = _layer(apt_repo, base, statedir, [], replace=["hello-fixture=2.0-1"]).install
    assert (entry.version, entry.replaces) == ("2.0-1", "3.0")


def test_a_replacement_from_the_sources_comes_with_its_new_dependencies(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("virtual-user", "0.9"))
    plan = _layer(apt_repo, base, statedir, [], replace=["virtual-user"])
    assert [(p.name, p.version, p.replaces) for p in plan.install] == [
        ("virtual-provider", "1.0", None),
        ("virtual-user", "1.0", "0.9"),
    ]


@pytest.mark.parametrize(
    ("installed", "spec", "message"),
    [
        ((), "hello-fixture", 'package "hello-fixture" is not in the base commit: '),
        ((HELLO_BASE := DebSpec("hello-fixture", "2.0-1"),), "hello-fixture",
         'the APT sources have no version of package "hello-fixture" newer than 2.0-1 in the '
         "base commit; name one with hello-fixture=VERSION"),
        ((DebSpec("hello-fixture", "3.0"),), "hello-fixture",
         'the APT sources have no version of package "hello-fixture" newer than 3.0'),
        ((OLD_HELLO,), "hello-fixture=9.9", 'version 9.9 of package "hello-fixture" is not in '
         "the APT sources"),
        ((HELLO_BASE,), "hello-fixture=2.0-1",
         'package "hello-fixture" 2.0-1 is already the version in the base commit'),
        ((OLD_HELLO,), "Hello_Fixture", 'invalid replacement "Hello_Fixture"'),
    ],
)  # fmt: skip
def test_a_replacement_from_the_sources_that_cannot_be_is_one_sentence(
    apt_repo: AptRepo,
    tmp_path: Path,
    statedir: Path,
    installed: tuple[DebSpec, ...],
    spec: str,
    message: str,
) -> None:
    base = write_status(tmp_path / "status", *installed)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], replace=[spec])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_replacement_the_base_already_has_is_inactive_when_allowed(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("hello-fixture", "2.0-1"))
    for spec in ("hello-fixture", "hello-fixture=2.0-1"):
        plan = _layer(apt_repo, base, statedir, [], replace=[spec], allow_inactive=True)
        assert plan.install == []
