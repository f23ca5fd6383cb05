"""The command lines apt-ostree's systemd units run are ones the CLI accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from apt_ostree.cli.main import build_parser

UNITS = Path(__file__).resolve().parents[2] / "data/systemd"


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_every_apt_ostree_command_line_of_a_unit_parses(unit: str) -> None:
    for line in (UNITS / unit).read_text().splitlines():
        if not line.startswith("ExecStart=/usr/bin/apt-ostree "):
            continue
        argv = shlex.split(line.removeprefix("ExecStart=/usr/bin/apt-ostree "))
        args = build_parser(argv).parse_args(argv)
        assert args.func is not None
