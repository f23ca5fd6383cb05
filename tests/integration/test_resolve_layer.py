"""Resolving a package layer on an installed base with libapt-pkg; search and refresh-md."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.debian.packages import LayerPlan, PackageInfo
from apt_ostree.debian.resolve import (
    fetch_packages,
    refresh_metadata,
    resolve_layer,
    search_packages,
)
from apt_ostree.errors import ResolveError
from apt_ostree.reporter import Reporter
from tests.fixtures.aptrepo import AptRepo, DebSpec, SigningKey, build_deb, build_repo, serve_repo


def write_status(path: Path, *installed: DebSpec) -> Path:
    """A dpkg status file in which `installed` are installed."""
    stanzas = []
    for spec in installed:
        control = spec.control()
        # dpkg writes Status right after Package.
        head, _, rest = control.partition("\n")
        stanzas.append(f"{head}\nStatus: install ok installed\n{rest}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(stanzas))
    return path


@pytest.fixture
def statedir(tmp_path: Path) -> Path:
    return tmp_path / "apt-state"


def _layer(
    repo: AptRepo, base: Path, statedir: Path, install: list[str], **kwargs: Any
) -> LayerPlan:
    return resolve_layer(
        [repo.sources_stanza()],
        status_file=base,
        arch="amd64",
        statedir=statedir,
        install=install,
        **kwargs,
    )


def _installs(plan: LayerPlan) -> list[tuple[str, str, bool]]:
    return [(p.name, p.version, p.requested) for p in plan.install]


PKG_A = DebSpec("pkg-a", depends="pkg-b (>= 1.0)")
PKG_B = DebSpec("pkg-b", "1.0")
PKG_C = DebSpec("pkg-c", conflicts="pkg-a")
HELLO = DebSpec("hello-fixture", "2.0-1")


def test_dependencies_in_the_base_are_not_installed_again(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_B)
    plan = _layer(apt_repo, base, statedir, ["pkg-a"])
    assert _installs(plan) == [("pkg-a", "1.0", True)]
    assert plan.remove == [] and plan.inactive == []


def test_an_empty_base_gets_the_dependencies_too(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    plan = _layer(apt_repo, write_status(tmp_path / "status"), statedir, ["pkg-a"])
    assert _installs(plan) == [("pkg-a", "1.0", True), ("pkg-b", "1.0", False)]


def test_the_plan_says_where_each_deb_comes_from(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    plan = _layer(apt_repo, write_status(tmp_path / "status"), statedir, ["hello-fixture"])
    [hello] = plan.install
    deb = apt_repo.path / "pool" / "main" / "hello-fixture_2.0-1_amd64.deb"
    # apt spells file: URIs its own way ("file:/path").
    assert urllib.parse.urlsplit(hello.uri).path == str(deb)
    assert hello.filename == "hello-fixture_2.0-1_amd64.deb"
    assert hello.size == deb.stat().st_size
    assert hello.sha256 == hashlib.sha256(deb.read_bytes()).hexdigest()
    assert hello.local_path is None
    assert plan.download_size == hello.size


def test_the_plan_survives_json(apt_repo: AptRepo, tmp_path: Path, statedir: Path) -> None:
    plan = _layer(apt_repo, write_status(tmp_path / "status"), statedir, ["pkg-a"])
    assert LayerPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_a_package_already_in_the_base_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", HELLO)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, ["hello-fixture"])
    assert str(e.value) == (
        'package "hello-fixture" is already in the base commit; '
        "use --allow-inactive to request it anyway"
    )


def test_every_request_already_in_the_base_is_named(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", HELLO, PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, ["hello-fixture", "pkg-a", "pkg-b"])
    assert str(e.value) == (
        'packages "hello-fixture", "pkg-b" are already in the base commit; '
        "use --allow-inactive to request them anyway"
    )


def test_allow_inactive_records_the_request_as_inactive(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", HELLO, PKG_B)
    plan = _layer(apt_repo, base, statedir, ["hello-fixture", "pkg-a"], allow_inactive=True)
    assert plan.inactive == ["hello-fixture"]
    assert _installs(plan) == [("pkg-a", "1.0", True)]


def test_a_virtual_package_provided_by_the_base_is_already_there(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(
        tmp_path / "status", DebSpec("virtual-provider", provides="fixture-virtual")
    )
    with pytest.raises(ResolveError, match='"fixture-virtual" is already in the base commit'):
        _layer(apt_repo, base, statedir, ["fixture-virtual"])


def test_unknown_package_is_an_error(apt_repo: AptRepo, tmp_path: Path, statedir: Path) -> None:
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, write_status(tmp_path / "status"), statedir, ["nope"])
    assert str(e.value) == 'package "nope" is not available from the configured sources'


def test_a_conflict_with_a_base_package_names_both(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_A, PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, ["pkg-c"])
    assert str(e.value) == (
        'package "pkg-c" (requested) conflicts with "pkg-a" 1.0 in the base commit'
    )


def test_a_base_package_that_conflicts_with_the_request_is_named(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_C)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, ["pkg-a"])
    assert str(e.value) == (
        'package "pkg-c" 1.0 in the base commit conflicts with "pkg-a" (requested)'
    )


@pytest.mark.parametrize("order", [["pkg-a", "pkg-c"], ["pkg-c", "pkg-a"]])
def test_conflicting_requests_are_explained(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path, order: list[str]
) -> None:
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, write_status(tmp_path / "status"), statedir, order)
    assert str(e.value) == 'package "pkg-c" (requested) conflicts with "pkg-a" (requested)'


@pytest.fixture
def libbar_repo(tmp_path: Path, signing_key: SigningKey) -> AptRepo:
    """libbar 1.0 and 2.0, and packages that need one or the other."""
    specs = [
        DebSpec("libbar", "1.0"),
        DebSpec("libbar", "2.0"),
        DebSpec("foo", depends="libbar (>= 2.0)"),
        DebSpec("old-foo", depends="libbar (<< 2.0)"),
        DebSpec("foo-frontend", depends="foo"),
        DebSpec("bar-breaker", breaks="libbar (<< 2.0)"),
    ]
    debs = [build_deb(spec, tmp_path / "libbar-debs") for spec in specs]
    return build_repo(debs, tmp_path / "libbar-repo", signing_key)


def test_a_request_that_needs_a_newer_base_package_is_an_error(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "1.0"))
    with pytest.raises(ResolveError) as e:
        _layer(libbar_repo, base, statedir, ["foo"])
    assert str(e.value) == (
        'package "foo" (requested) needs "libbar" (>= 2.0) but the base commit has libbar 1.0; '
        "use override replace to change a base package"
    )


def test_a_request_that_needs_an_older_base_package_is_an_error(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "2.0"))
    with pytest.raises(ResolveError) as e:
        _layer(libbar_repo, base, statedir, ["old-foo"])
    assert str(e.value) == (
        'package "old-foo" (requested) needs "libbar" (<< 2.0) but the base commit has '
        "libbar 2.0; use override replace to change a base package"
    )


def test_a_dependency_that_needs_a_newer_base_package_is_named(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "1.0"))
    with pytest.raises(ResolveError) as e:
        _layer(libbar_repo, base, statedir, ["foo-frontend"])
    assert str(e.value) == (
        'package "foo" (required by "foo-frontend") needs "libbar" (>= 2.0) but the base '
        "commit has libbar 1.0; use override replace to change a base package"
    )


def test_a_request_that_breaks_a_base_package_is_an_error(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "1.0"))
    with pytest.raises(ResolveError) as e:
        _layer(libbar_repo, base, statedir, ["bar-breaker"])
    assert (
        str(e.value) == 'package "bar-breaker" (requested) breaks "libbar" 1.0 in the base commit'
    )


def test_a_base_that_satisfies_the_request_is_kept(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "2.0"))
    assert _installs(_layer(libbar_repo, base, statedir, ["foo"])) == [("foo", "1.0", True)]


def test_removing_a_base_package(apt_repo: AptRepo, tmp_path: Path, statedir: Path) -> None:
    base = write_status(tmp_path / "status", HELLO, PKG_B)
    plan = _layer(apt_repo, base, statedir, [], remove=["hello-fixture"])
    assert plan.remove == [PackageInfo("hello-fixture", "2.0-1", "amd64")]
    assert plan.install == []


def test_removing_a_base_package_that_another_needs_names_the_dependent(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_A, PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], remove=["pkg-b"])
    assert str(e.value) == (
        'package "pkg-b" cannot be removed: "pkg-a" 1.0 in the base commit depends on it '
        "(Depends: pkg-b (>= 1.0))"
    )


def test_a_removal_that_breaks_many_base_packages_is_one_sentence(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    users = [DebSpec(f"user-{n}", depends="pkg-b") for n in range(5)]
    base = write_status(tmp_path / "status", PKG_B, *users)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], remove=["pkg-b"])
    assert str(e.value) == (
        'package "pkg-b" cannot be removed: "user-0" 1.0, "user-1" 1.0, "user-2" 1.0 '
        "and 2 more in the base commit depend on it"
    )


def test_removing_a_package_with_its_dependents(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_A, PKG_B)
    plan = _layer(apt_repo, base, statedir, [], remove=["pkg-b", "pkg-a"])
    assert plan.remove == [
        PackageInfo("pkg-a", "1.0", "amd64"),
        PackageInfo("pkg-b", "1.0", "amd64"),
    ]


def test_removing_a_package_that_is_not_in_the_base_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, write_status(tmp_path / "status"), statedir, [], remove=["pkg-b"])
    assert str(e.value) == 'package "pkg-b" is not in the base commit'


def test_an_essential_package_cannot_be_removed(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("fixture-essential", essential=True))
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], remove=["fixture-essential"])
    assert str(e.value) == 'package "fixture-essential" is essential and cannot be removed'


def test_a_request_needing_a_removed_base_package_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, ["pkg-a"], remove=["pkg-b"])
    assert str(e.value) == (
        'package "pkg-a" (requested) needs "pkg-b", '
        "which override remove takes out of the base commit"
    )


def test_a_removed_package_can_be_replaced_by_a_provider(
    tmp_path: Path, signing_key: SigningKey, statedir: Path
) -> None:
    specs = [
        DebSpec("mta-user", depends="mail-transport-agent"),
        DebSpec("old-mta", provides="mail-transport-agent"),
        DebSpec("new-mta", provides="mail-transport-agent", conflicts="old-mta"),
    ]
    repo = build_repo(
        [build_deb(spec, tmp_path / "debs") for spec in specs], tmp_path / "repo", signing_key
    )
    base = write_status(tmp_path / "status", specs[0], specs[1])
    plan = _layer(repo, base, statedir, ["new-mta"], remove=["old-mta"])
    assert _installs(plan) == [("new-mta", "1.0", True)]
    assert plan.remove == [PackageInfo("old-mta", "1.0", "amd64")]


def test_recommends_are_not_layered_by_default(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status")
    assert _installs(_layer(apt_repo, base, statedir, ["recommender"])) == [
        ("recommender", "1.0", True)
    ]
    with_recommends = _layer(apt_repo, base, statedir, ["recommender"], recommends=True)
    assert [p.name for p in with_recommends.install] == ["recommended-fixture", "recommender"]


def test_a_local_deb_takes_part_in_the_resolution(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("local-tool", "3.1", depends="pkg-b"), tmp_path / "local")
    plan = _layer(apt_repo, write_status(tmp_path / "status"), statedir, [], local_debs=[deb])
    assert _installs(plan) == [("local-tool", "3.1", True), ("pkg-b", "1.0", False)]
    local = plan.install[0]
    assert local.local_path == str(deb)
    assert local.sha256 == hashlib.sha256(deb.read_bytes()).hexdigest()
    # Nothing to download for a local package.
    assert plan.download_size == plan.install[1].size


def test_a_local_deb_wins_over_the_sources(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "0.5"), tmp_path / "local")
    plan = _layer(apt_repo, write_status(tmp_path / "status"), statedir, [], local_debs=[deb])
    assert _installs(plan) == [("pkg-b", "0.5", True)]


def test_a_local_deb_whose_dependency_the_base_cannot_satisfy(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("local-tool", depends="pkg-b (>= 2.0)"), tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], local_debs=[deb])
    assert str(e.value) == (
        'package "local-tool" (requested) needs "pkg-b" (>= 2.0) but the base commit has '
        "pkg-b 1.0; use override replace to change a base package"
    )


def test_a_local_deb_of_another_version_of_a_base_package_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    deb = build_deb(DebSpec("pkg-b", "2.0"), tmp_path / "local")
    base = write_status(tmp_path / "status", PKG_B)
    with pytest.raises(ResolveError) as e:
        _layer(apt_repo, base, statedir, [], local_debs=[deb])
    assert str(e.value) == (
        'package "pkg-b" 2.0 (local) would replace "pkg-b" 1.0 in the base commit; '
        "use override replace to change a base package"
    )


def test_local_debs_do_not_outlive_their_resolution(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status")
    deb = build_deb(DebSpec("local-tool"), tmp_path / "local")
    _layer(apt_repo, base, statedir, [], local_debs=[deb])
    with pytest.raises(ResolveError, match='"local-tool" is not available'):
        _layer(apt_repo, base, statedir, ["local-tool"])


def test_a_file_that_is_not_a_deb_is_an_error(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_text("not a deb\n")
    with pytest.raises(ResolveError, match=f"^{bogus} is not a valid .deb package: "):
        _layer(apt_repo, write_status(tmp_path / "status"), statedir, [], local_debs=[bogus])


def test_download_size_leaves_out_the_cache(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status")
    plan = _layer(apt_repo, base, statedir, ["pkg-a"])
    fetch_packages(plan, cachedir=tmp_path / "cache")
    again = _layer(apt_repo, base, statedir, ["pkg-a"], cachedir=tmp_path / "cache")
    assert again.download_size == 0
    assert plan.download_size == sum(p.size for p in plan.install)


def test_without_refresh_the_cached_lists_are_used(
    apt_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status")
    with serve_repo(apt_repo) as served:
        stanzas = [served.sources_stanza()]
        resolve_layer(stanzas, status_file=base, arch="amd64", statedir=statedir, install=["pkg-a"])
    # The server is gone: only the cached lists can answer.
    plan = resolve_layer(
        stanzas,
        status_file=base,
        arch="amd64",
        statedir=statedir,
        install=["pkg-a"],
        refresh=False,
    )
    assert [p.name for p in plan.install] == ["pkg-a", "pkg-b"]


def test_a_missing_status_file_is_an_error(apt_repo: AptRepo, tmp_path: Path) -> None:
    with pytest.raises(ResolveError, match="the base commit has no dpkg status file at "):
        _layer(apt_repo, tmp_path / "nothing", tmp_path / "state", ["pkg-a"])


def test_search_finds_a_package_by_words_of_its_description(
    apt_repo: AptRepo, statedir: Path
) -> None:
    found = search_packages(
        [apt_repo.sources_stanza()], ["SYNTHETIC", "hello"], arch="amd64", statedir=statedir
    )
    assert found == [
        ("hello-fixture", "2.0-1", "synthetic package hello-fixture for apt-ostree tests")
    ]


def test_search_needs_every_term(apt_repo: AptRepo, statedir: Path) -> None:
    stanzas = [apt_repo.sources_stanza()]
    kernel = search_packages(stanzas, ["kernel", "Fake"], arch="amd64", statedir=statedir)
    assert [name for name, _, _ in kernel] == ["linux-image-6.1.0-fake"]
    assert search_packages(stanzas, ["kernel", "hello"], arch="amd64", statedir=statedir) == []


def test_refresh_md_fetches_again_only_when_forced(apt_repo: AptRepo, statedir: Path) -> None:
    with serve_repo(apt_repo) as served:
        stanzas = [served.sources_stanza()]
        refresh_metadata(stanzas, arch="amd64", statedir=statedir)
        hit = io.StringIO()
        refresh_metadata(stanzas, arch="amd64", statedir=statedir, reporter=Reporter(hit))
        forced = io.StringIO()
        refresh_metadata(
            stanzas, arch="amd64", statedir=statedir, force=True, reporter=Reporter(forced)
        )
    assert "Hit: " in hit.getvalue() and "Get: " not in hit.getvalue()
    assert "Get: " in forced.getvalue()


def test_a_package_with_only_its_config_files_left_is_not_in_the_base(
    libbar_repo: AptRepo, tmp_path: Path, statedir: Path
) -> None:
    base = write_status(tmp_path / "status", DebSpec("libbar", "1.0"))
    text = base.read_text().replace("install ok installed", "deinstall ok config-files")
    base.write_text(text)
    plan = _layer(libbar_repo, base, statedir, ["foo"])
    assert _installs(plan) == [("foo", "1.0", True), ("libbar", "2.0", False)]
