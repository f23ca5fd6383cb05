"""Man pages and bash completion are generated from the parser: every command and
option is in them, the pages are clean roff, and the completion completes."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

import pytest

from apt_ostree.cli.docgen import write_all
from apt_ostree.cli.main import build_parser
from apt_ostree.cli.options import subparsers, walk


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docgen")
    write_all(out)
    return out


def _visible_options(p: argparse.ArgumentParser) -> list[str]:
    return [
        s for a in p._actions if a.option_strings and a.help != argparse.SUPPRESS
        for s in a.option_strings if s not in ("-h", "--help")
    ]  # fmt: skip


def test_one_man_page_per_command_and_apt_ostree_8(generated: Path) -> None:
    names = {p.name for p in (generated / "man").iterdir()}
    expected = {"apt-ostree.8"} | {f"apt-ostree-{n}.8" for n, _ in subparsers(build_parser())}
    assert names == expected


def test_every_option_of_every_command_is_in_its_man_page(generated: Path) -> None:
    for path, p in walk(build_parser()):
        page = (generated / "man" / f"apt-ostree-{path[0]}.8").read_text()
        for option in _visible_options(p):
            roff = option.replace("-", "\\-")
            assert f"\\fB{roff}\\fR" in page, (path, option)


def test_man_pages_render_without_groff_warnings(generated: Path) -> None:
    for page in sorted((generated / "man").iterdir()):
        proc = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True
        )
        assert proc.returncode == 0 and proc.stderr == "", (page.name, proc.stderr)


def complete(generated: Path, line: str) -> list[str]:
    """What bash offers for the last word of `line` (an empty last word: `line ""`)."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = (
        f"source {shlex.quote(str(generated / 'bash-completion/apt-ostree'))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n_apt_ostree\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert proc.stderr == ""
    return [w for w in proc.stdout.splitlines() if w]


def test_completion_offers_every_option_of_every_command(generated: Path) -> None:
    for path, p in walk(build_parser()):
        offered = set(complete(generated, f"apt-ostree {' '.join(path)} -"))
        assert set(_visible_options(p)) <= offered, path


def test_completion_of_commands_subcommands_and_aliases(generated: Path) -> None:
    assert complete(generated, "apt-ostree st") == ["status"]
    assert complete(generated, "apt-ostree --sysroot /s override re") == [
        "remove", "replace", "reset"
    ]  # fmt: skip
    # a hidden alias completes as its command
    assert "--check" in complete(generated, "apt-ostree update --ch")


def test_completion_skips_option_values_and_completes_paths(
    generated: Path, tmp_path: Path
) -> None:
    (tmp_path / "repo-dir").mkdir()
    assert complete(generated, f"apt-ostree db diff --repo {tmp_path}/rep") == [
        f"{tmp_path}/repo-dir"
    ]
    # "status" is the value of --stateroot here, not the command
    assert "--editor" in complete(generated, "apt-ostree kargs --stateroot status --ed")
