"""APT sources: treefile entries and the host's configuration as deb822 stanzas."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from apt_ostree.debian.sources import (
    host_sources,
    parse_source_entry,
    source_uris,
    sources_for_suite,
    write_sources_file,
)
from apt_ostree.errors import SourceError

URI = "http://127.0.0.1:8080/debian"
KEY_BLOCK = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----"
)


def stanza(*lines: str) -> str:
    return "\n".join(lines)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys/repo.asc"
    path.parent.mkdir()
    path.write_text("KEY\n")
    return path


# --- one-line entries -----------------------------------------------------------------


def test_one_line_entry_with_options_becomes_a_stanza(tmp_path: Path, key_file: Path) -> None:
    entry = f"deb [arch=amd64,i386 signed-by=keys/repo.asc trusted=yes] {URI} bookworm main contrib"
    assert parse_source_entry(entry, tmp_path) == stanza(
        "Types: deb",
        f"URIs: {URI}",
        "Suites: bookworm",
        "Components: main contrib",
        "Architectures: amd64 i386",
        f"Signed-By: {key_file}",
        "Trusted: yes",
    )


def test_one_line_add_and_remove_options_become_add_and_remove_fields(tmp_path: Path) -> None:
    entry = f"deb [ arch+=i386 lang-=de ] {URI} bookworm main"
    result = parse_source_entry(entry, tmp_path)
    assert "Architectures-Add: i386\nLanguages-Remove: de" in result


def test_one_line_entry_without_suite_uses_the_treefile_suite_and_components(
    tmp_path: Path,
) -> None:
    result = parse_source_entry(
        f"deb {URI}", tmp_path, suite="bookworm", components=["main", "non-free"]
    )
    assert result == stanza(
        "Types: deb", f"URIs: {URI}", "Suites: bookworm", "Components: main non-free"
    )


def test_one_line_entry_without_components_uses_main_by_default(tmp_path: Path) -> None:
    result = parse_source_entry(f"deb {URI} trixie", tmp_path)
    assert result.endswith("Suites: trixie\nComponents: main")


def test_entry_without_any_suite_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no suite"):
        parse_source_entry(f"deb {URI}", tmp_path)


def test_flat_repository_gets_no_components(tmp_path: Path) -> None:
    result = parse_source_entry("deb file:///srv/repo ./", tmp_path, suite="bookworm")
    assert result == stanza("Types: deb", "URIs: file:///srv/repo", "Suites: ./")


def test_unknown_one_line_option_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='unknown option "colour=blue"'):
        parse_source_entry(f"deb [colour=blue] {URI} bookworm main", tmp_path)


def test_deb_src_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='only "deb" sources'):
        parse_source_entry(f"deb-src {URI} bookworm main", tmp_path)


def test_uri_without_scheme_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='URI "srv/repo" has no scheme'):
        parse_source_entry("deb srv/repo bookworm main", tmp_path)


# --- deb822 string entries -------------------------------------------------------------


def test_deb822_string_entry_is_normalized(tmp_path: Path) -> None:
    entry = textwrap.dedent(
        f"""\
        # our mirror
        types: deb deb-src
        uris: {URI}
        suites: bookworm bookworm-updates
        """
    )
    assert parse_source_entry(entry, tmp_path) == stanza(
        "Types: deb", f"URIs: {URI}", "Suites: bookworm bookworm-updates", "Components: main"
    )


def test_deb822_string_with_embedded_key_keeps_it(tmp_path: Path) -> None:
    entry = stanza(
        "Types: deb",
        f"URIs: {URI}",
        "Suites: bookworm",
        "Components: main",
        "Signed-By:",
        " -----BEGIN PGP PUBLIC KEY BLOCK-----",
        " .",
        " mDMEZ",
        " =abcd",
        " -----END PGP PUBLIC KEY BLOCK-----",
    )
    assert parse_source_entry(entry, tmp_path) == entry


def test_deb822_string_with_two_stanzas_is_an_error(tmp_path: Path) -> None:
    entry = f"URIs: {URI}\nSuites: a\n\nURIs: {URI}\nSuites: b\n"
    with pytest.raises(SourceError, match="single stanza"):
        parse_source_entry(entry, tmp_path)


# --- mapping entries -------------------------------------------------------------------


def test_mapping_entry_accepts_any_case_lists_and_booleans(tmp_path: Path, key_file: Path) -> None:
    entry = {
        "URIs": [URI, "file:///srv/repo"],
        "suites": "bookworm",
        "COMPONENTS": ["main", "contrib"],
        "Signed-By": "keys/repo.asc",
        "architectures": ["amd64"],
        "pdiffs": False,
    }
    assert parse_source_entry(entry, tmp_path) == stanza(
        "Types: deb",
        f"URIs: {URI} file:///srv/repo",
        "Suites: bookworm",
        "Components: main contrib",
        f"Signed-By: {key_file}",
        "Architectures: amd64",
        "PDiffs: no",
    )


def test_mapping_entry_with_embedded_key_writes_empty_lines_as_dots(tmp_path: Path) -> None:
    result = parse_source_entry({"uris": URI, "signed-by": KEY_BLOCK}, tmp_path, suite="bookworm")
    assert result.endswith(
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mDMEZ\n =abcd\n"
        " -----END PGP PUBLIC KEY BLOCK-----"
    )


def test_mapping_entry_with_unknown_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='unknown field "mirror"'):
        parse_source_entry({"uris": URI, "mirror": "yes"}, tmp_path, suite="bookworm")


def test_missing_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        SourceError, match=r'key file "nothere\.gpg" named in Signed-By does not exist'
    ):
        parse_source_entry({"uris": URI, "signed-by": "nothere.gpg"}, tmp_path, suite="bookworm")


def test_key_fingerprint_is_kept_as_is(tmp_path: Path) -> None:
    fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567"
    result = parse_source_entry({"uris": URI, "signed-by": fingerprint}, tmp_path, suite="a")
    assert result.endswith(f"Signed-By: {fingerprint}")


def test_entry_without_uris_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no URIs"):
        parse_source_entry({"suites": "bookworm"}, tmp_path)


# --- the host's sources -----------------------------------------------------------------


def make_root(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "root"
    for name, text in files.items():
        path = root / "etc/apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_host_sources_reads_list_and_sources_files_and_skips_others(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "sources.list": f"""\
                # main archive
                deb {URI} bookworm main
                deb-src {URI} bookworm main
                deb [signed-by=/usr/share/keyrings/local.gpg] file:///srv/repo ./  # local
                """,
            "sources.list.d/b.sources": """\
                Types: deb deb-src
                URIs: http://127.0.0.1:8080/security
                Suites: bookworm-security
                Components: main

                Types: deb
                URIs: http://127.0.0.1:8080/off
                Suites: bookworm
                Components: main
                Enabled: no

                Types: deb-src
                URIs: http://127.0.0.1:8080/src
                Suites: bookworm
                Components: main
                """,
            "sources.list.d/a.list": "deb http://127.0.0.1:8080/extra bookworm contrib\n",
            "sources.list.d/c.list.disabled": "deb http://127.0.0.1:8080/disabled bookworm main\n",
        },
    )
    assert host_sources(root) == [
        stanza("Types: deb", f"URIs: {URI}", "Suites: bookworm", "Components: main"),
        stanza(
            "Types: deb",
            "URIs: file:///srv/repo",
            "Suites: ./",
            "Signed-By: /usr/share/keyrings/local.gpg",
        ),
        stanza(
            "Types: deb",
            "URIs: http://127.0.0.1:8080/extra",
            "Suites: bookworm",
            "Components: contrib",
        ),
        stanza(
            "Types: deb",
            "URIs: http://127.0.0.1:8080/security",
            "Suites: bookworm-security",
            "Components: main",
        ),
    ]


def test_host_sources_never_changes_the_host_files(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, {"sources.list": f"deb {URI} bookworm main\ndeb-src {URI} bookworm main\n"}
    )
    before = (root / "etc/apt/sources.list").read_bytes()
    host_sources(root)
    assert (root / "etc/apt/sources.list").read_bytes() == before


def test_host_without_sources_is_an_error(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"sources.list": f"deb-src {URI} bookworm main\n"})
    with pytest.raises(SourceError, match="no APT sources configured"):
        host_sources(root)


def test_host_source_error_names_file_and_line(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"sources.list.d/x.list": f"\ndeb {URI}\n"})
    with pytest.raises(SourceError, match=r"x\.list:2: .* names no suite"):
        host_sources(root)


# --- writing and reading back ----------------------------------------------------------


def test_write_sources_file_separates_stanzas_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "etc/apt/sources.list.d/compose.sources"
    write_sources_file(["Types: deb\nURIs: file:///a", "Types: deb\nURIs: file:///b"], path)
    assert path.read_text() == "Types: deb\nURIs: file:///a\n\nTypes: deb\nURIs: file:///b\n"


def test_source_uris_lists_each_uri_once_in_order() -> None:
    stanzas = [f"Types: deb\nURIs: {URI} file:///srv/repo", f"Types: deb\nURIs: {URI}"]
    assert source_uris(stanzas) == [URI, "file:///srv/repo"]


def test_host_sources_serve_the_treefile_suite_with_their_pockets() -> None:
    host = [
        stanza("Types: deb", f"URIs: {URI}", "Suites: bookworm bookworm-updates",
               "Components: main", "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"),
        stanza("Types: deb", "URIs: http://127.0.0.1:8080/debian-security",
               "Suites: bookworm-security", "Components: main"),
    ]  # fmt: skip
    assert sources_for_suite(host, "trixie") == [
        stanza("Types: deb", f"URIs: {URI}", "Suites: trixie trixie-updates",
               "Components: main", "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"),
        stanza("Types: deb", "URIs: http://127.0.0.1:8080/debian-security",
               "Suites: trixie-security", "Components: main"),
    ]  # fmt: skip
    assert sources_for_suite(host, "bookworm") == host


def test_retargeting_keeps_flat_repositories_and_drops_suites_made_twice() -> None:
    flat = stanza("Types: deb", "URIs: file:/srv/repo/", "Suites: ./")
    both = stanza("Types: deb", f"URIs: {URI}", "Suites: bookworm trixie", "Components: main")
    assert sources_for_suite([flat, both, both], "trixie") == [
        flat,
        stanza("Types: deb", f"URIs: {URI}", "Suites: trixie", "Components: main"),
    ]
