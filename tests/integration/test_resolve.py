"""Resolving a fresh tree's package set with libapt-pkg against given sources."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.debian.aptchild import ResolverCrash, call_child
from apt_ostree.debian.packages import PackageInfo
from apt_ostree.debian.resolve import resolve_tree
from apt_ostree.errors import ResolveError, SourceError
from apt_ostree.reporter import Reporter
from tests.fixtures.aptrepo import AptRepo, DebSpec, SigningKey, build_deb, build_repo, serve_repo


@pytest.fixture
def statedir(tmp_path: Path) -> Path:
    return tmp_path / "apt-state"


def _resolve(
    repo: AptRepo, packages: list[str], statedir: Path, *, essential: bool = False, **kwargs: Any
) -> list[PackageInfo]:
    """Resolve against `repo` alone; the synthetic repos are tested without the essential set."""
    return resolve_tree(
        [repo.sources_stanza()],
        packages,
        arch="amd64",
        statedir=statedir,
        essential=essential,
        **kwargs,
    )


def _names(packages: list[PackageInfo]) -> list[str]:
    return [p.name for p in packages]


def test_dependencies_are_pulled_in_with_exact_versions(apt_repo: AptRepo, statedir: Path) -> None:
    assert _resolve(apt_repo, ["pkg-a"], statedir) == [
        PackageInfo("pkg-a", "1.0", "amd64"),
        PackageInfo("pkg-b", "1.0", "amd64"),
    ]


def test_arch_all_packages_report_all(apt_repo: AptRepo, statedir: Path) -> None:
    assert _resolve(apt_repo, ["conffile-fixture"], statedir) == [
        PackageInfo("conffile-fixture", "1.0", "all")
    ]


def test_essential_packages_are_included_when_asked(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, ["pkg-b"], statedir, essential=True)) == [
        "fixture-essential",
        "pkg-b",
    ]


def test_essential_packages_alone_make_a_tree(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, [], statedir, essential=True)) == ["fixture-essential"]


def test_essential_false_leaves_essential_packages_out(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, ["pkg-b"], statedir)) == ["pkg-b"]


def test_recommends_are_installed_by_default(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, ["recommender"], statedir)) == [
        "recommended-fixture",
        "recommender",
    ]


def test_recommends_are_skipped_when_disabled(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, ["recommender"], statedir, recommends=False)) == [
        "recommender"
    ]


def test_virtual_dependency_installs_its_provider(apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(apt_repo, ["virtual-user"], statedir)) == [
        "virtual-provider",
        "virtual-user",
    ]


def test_requesting_a_virtual_package_installs_its_only_provider(
    apt_repo: AptRepo, statedir: Path
) -> None:
    assert _names(_resolve(apt_repo, ["fixture-virtual"], statedir)) == ["virtual-provider"]


def test_unknown_package_is_an_error(apt_repo: AptRepo, statedir: Path) -> None:
    with pytest.raises(ResolveError) as e:
        _resolve(apt_repo, ["pkg-a", "nope"], statedir)
    assert str(e.value) == 'package "nope" is not available from the configured sources'


@pytest.mark.parametrize("order", [["pkg-a", "pkg-c"], ["pkg-c", "pkg-a"]])
def test_conflicting_requests_are_explained(
    apt_repo: AptRepo, statedir: Path, order: list[str]
) -> None:
    with pytest.raises(ResolveError) as e:
        _resolve(apt_repo, order, statedir)
    assert str(e.value) == 'package "pkg-c" (requested) conflicts with "pkg-a" (requested)'


def test_excluded_dependency_is_an_error_naming_both(apt_repo: AptRepo, statedir: Path) -> None:
    with pytest.raises(ResolveError) as e:
        _resolve(apt_repo, ["pkg-a"], statedir, exclude=["pkg-b"])
    assert str(e.value) == (
        'package "pkg-b" is excluded by exclude-packages but required by "pkg-a" '
        "(Depends: pkg-b (>= 1.0))"
    )


def test_excluding_a_requested_package_is_an_error(apt_repo: AptRepo, statedir: Path) -> None:
    with pytest.raises(ResolveError, match='"pkg-b" is excluded by exclude-packages but requested'):
        _resolve(apt_repo, ["pkg-b"], statedir, exclude=["pkg-b"])


def test_excluding_an_essential_package_is_an_error(apt_repo: AptRepo, statedir: Path) -> None:
    with pytest.raises(ResolveError) as e:
        _resolve(apt_repo, [], statedir, essential=True, exclude=["fixture-essential"])
    assert str(e.value) == (
        'package "fixture-essential" is excluded by exclude-packages but essential'
    )


def test_exclude_steers_alternatives(tmp_path: Path, signing_key: SigningKey) -> None:
    specs = [
        DebSpec("chooser", depends="first-choice | second-choice"),
        DebSpec("first-choice"),
        DebSpec("second-choice"),
    ]
    repo = build_repo(
        [build_deb(s, tmp_path / "debs") for s in specs], tmp_path / "repo", signing_key
    )
    resolved = _resolve(repo, ["chooser"], tmp_path / "state", exclude=["first-choice"])
    assert _names(resolved) == ["chooser", "second-choice"]


def test_unavailable_dependency_is_explained(tmp_path: Path, signing_key: SigningKey) -> None:
    deb = build_deb(DebSpec("needs-ghost", depends="ghost (>= 2)"), tmp_path / "debs")
    repo = build_repo([deb], tmp_path / "repo", signing_key)
    with pytest.raises(ResolveError) as e:
        _resolve(repo, ["needs-ghost"], tmp_path / "state")
    assert str(e.value) == 'package "needs-ghost" depends on ghost (>= 2), which is not available'


def test_highest_version_is_chosen(tmp_path: Path, signing_key: SigningKey) -> None:
    debs = [build_deb(DebSpec("multi", v), tmp_path / "debs") for v in ("1.0", "1.10", "1.9")]
    repo = build_repo(debs, tmp_path / "repo", signing_key)
    assert _resolve(repo, ["multi"], tmp_path / "state") == [PackageInfo("multi", "1.10", "amd64")]


def test_unsigned_repository_is_refused(unsigned_apt_repo: AptRepo, statedir: Path) -> None:
    with pytest.raises(SourceError) as e:
        _resolve(unsigned_apt_repo, ["pkg-a"], statedir)
    assert str(e.value) == f"source {unsigned_apt_repo.uri} fixture is not signed"


def test_signature_by_an_unknown_key_is_refused(
    apt_repo: AptRepo, wrong_keyring: Path, signing_key: SigningKey, statedir: Path
) -> None:
    stanza = apt_repo.sources_stanza(signed_by=wrong_keyring)
    with pytest.raises(SourceError) as e:
        resolve_tree([stanza], ["pkg-a"], arch="amd64", statedir=statedir, essential=False)
    assert str(e.value) == (
        f"source {apt_repo.uri} fixture is signed by an unknown key "
        f"(NO_PUBKEY {signing_key.fingerprint[-16:]})"
    )


def test_unreachable_source_is_an_error(apt_repo: AptRepo, statedir: Path) -> None:
    stanza = apt_repo.sources_stanza("http://127.0.0.1:1/")
    with pytest.raises(SourceError) as e:
        resolve_tree([stanza], ["pkg-a"], arch="amd64", statedir=statedir, essential=False)
    message = str(e.value)
    assert message.startswith("source http://127.0.0.1:1/ fixture is unreachable: ")
    assert "Connection refused" in message
    assert "\n" not in message


def test_missing_index_file_is_fatal(tmp_path: Path, signing_key: SigningKey) -> None:
    repo = build_repo(
        [build_deb(DebSpec("lonely"), tmp_path / "debs")], tmp_path / "repo", signing_key
    )
    for index in (repo.path / "dists" / "fixture" / "main" / "binary-amd64").iterdir():
        index.unlink()
    with pytest.raises(SourceError, match=f"source {repo.uri} fixture could not be fetched: "):
        _resolve(repo, ["lonely"], tmp_path / "state")


def test_resolves_over_http(http_apt_repo: AptRepo, statedir: Path) -> None:
    assert _names(_resolve(http_apt_repo, ["pkg-a"], statedir)) == ["pkg-a", "pkg-b"]


def test_warm_resolve_reuses_the_lists(http_apt_repo: AptRepo, statedir: Path) -> None:
    _resolve(http_apt_repo, ["pkg-a"], statedir)
    lists = statedir / "state" / "lists"
    assert sorted(p.name.split("_", 1)[1] for p in lists.glob("127.0.0.1*")) == [
        "dists_fixture_InRelease",
        "dists_fixture_main_binary-amd64_Packages",
    ]
    stream = io.StringIO()
    again = _resolve(http_apt_repo, ["pkg-a"], statedir, reporter=Reporter(stream=stream))
    assert _names(again) == ["pkg-a", "pkg-b"]
    # The server answered "not modified": nothing was downloaded again.
    assert "Hit: " in stream.getvalue()
    assert "Get: " not in stream.getvalue()


def test_warm_state_does_not_hide_an_unreachable_source(apt_repo: AptRepo, statedir: Path) -> None:
    with serve_repo(apt_repo) as served:
        stanza = served.sources_stanza()
        resolve_tree([stanza], ["pkg-a"], arch="amd64", statedir=statedir, essential=False)
    with pytest.raises(SourceError, match="is unreachable"):
        resolve_tree([stanza], ["pkg-a"], arch="amd64", statedir=statedir, essential=False)


def test_progress_is_relayed_to_the_reporter(apt_repo: AptRepo, statedir: Path) -> None:
    stream = io.StringIO()
    _resolve(apt_repo, ["pkg-a"], statedir, reporter=Reporter(stream=stream))
    assert "fixture InRelease" in stream.getvalue()


def test_each_call_sees_only_its_own_sources(
    apt_repo: AptRepo, tmp_path: Path, signing_key: SigningKey
) -> None:
    newer = build_repo(
        [build_deb(DebSpec("pkg-b", "2.0"), tmp_path / "debs")], tmp_path / "repo", signing_key
    )
    first = _resolve(apt_repo, ["pkg-b"], tmp_path / "one")
    second = _resolve(newer, ["pkg-b"], tmp_path / "two")
    assert first == [PackageInfo("pkg-b", "1.0", "amd64")]
    assert second == [PackageInfo("pkg-b", "2.0", "amd64")]


def test_host_sources_are_not_used(apt_repo: AptRepo, statedir: Path) -> None:
    _resolve(apt_repo, ["pkg-a"], statedir)
    fetched = {p.name for p in (statedir / "state" / "lists").iterdir() if p.is_file()}
    prefix = str(apt_repo.path).replace("/", "_")
    assert fetched and all(name.startswith(prefix) for name in fetched), fetched


def test_invalid_architecture_is_rejected_before_anything_runs(
    apt_repo: AptRepo, statedir: Path
) -> None:
    with pytest.raises(ResolveError, match='invalid architecture "amd 64"'):
        resolve_tree([apt_repo.sources_stanza()], ["pkg-a"], arch="amd 64", statedir=statedir)
    assert not statedir.exists()


def test_no_sources_is_an_error(statedir: Path) -> None:
    with pytest.raises(SourceError, match="no APT sources are configured"):
        resolve_tree([], ["pkg-a"], arch="amd64", statedir=statedir)


def test_resolver_crash_shows_the_child_traceback() -> None:
    with pytest.raises(ResolverCrash) as e:
        call_child({"not": "a request"}, None)
    assert "Traceback" in str(e.value)
    assert "KeyError" in str(e.value)
