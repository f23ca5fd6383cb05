"""status -J (JSONPath), rpm-ostree's package tuples for Debian packages, and the
edits `kargs --editor` derives from the edited line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.cli.admin import edits_from_editor
from apt_ostree.cli.jsonpath import JsonPathError, query
from apt_ostree.cli.main import main
from apt_ostree.system.status import package_tuple

STATUS: dict[str, Any] = {
    "deployments": [
        {"id": "a", "booted": True, "packages": ["htop", "vim"], "base-commit-meta": {"v": 1}},
        {"id": "b", "booted": False, "packages": [], "base-commit-meta": {"v": 2}},
    ],
    "transaction": None,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$", [STATUS]),
        ("$.deployments[0].id", ["a"]),
        ("$.deployments[-1].id", ["b"]),
        ("$.deployments[*].booted", [True, False]),
        ("$['deployments'][1]['id']", ["b"]),
        ("$.deployments[0].packages[0:2]", ["htop", "vim"]),
        ("$.deployments[0,1].id", ["a", "b"]),
        ("$..v", [1, 2]),
        ("$.transaction", [None]),
        ("$.nothing", []),
        ("$.deployments[5].id", []),
    ],
)
def test_jsonpath_selects_as_json_glib_does(expression: str, expected: list[Any]) -> None:
    assert query(STATUS, expression) == expected


@pytest.mark.parametrize("expression", ["deployments", "$.deployments[?(@.booted)]", "$.a b"])
def test_jsonpath_refuses_what_json_glib_refuses(expression: str) -> None:
    with pytest.raises(JsonPathError):
        query(STATUS, expression)


@pytest.mark.parametrize(
    ("name", "version", "arch", "epoch", "upstream", "revision"),
    [
        ("bash", "5.2.15-2+b2", "amd64", 0, "5.2.15", "2+b2"),
        ("vim", "2:9.0.1378-2", "amd64", 2, "9.0.1378", "2"),
        ("base-files", "12.4+deb12u5", "amd64", 0, "12.4+deb12u5", ""),  # native
        ("libfoo", "1.0-rc1-3", "all", 0, "1.0-rc1", "3"),
    ],
)
def test_package_tuple_splits_debian_versions_like_nevra(
    name: str, version: str, arch: str, epoch: int, upstream: str, revision: str
) -> None:
    assert package_tuple(name, version, arch) == [
        f"{name}_{version}_{arch}", name, epoch, upstream, revision, arch
    ]  # fmt: skip


def test_editor_edits_delete_what_is_gone_and_append_what_is_new() -> None:
    old = 'root=UUID=1 ro console=tty0 console=ttyS0 quiet foo="a b"'
    new = 'root=UUID=1 ro console=ttyS0 splash foo="a b" console=tty1'
    append, _, delete, _, _ = edits_from_editor(old, new)
    assert append == ["splash", "console=tty1"]
    assert delete == ["console=tty0", "quiet"]


def test_editor_edits_are_empty_when_nothing_changed() -> None:
    assert not any(edits_from_editor("a=1 b", "  a=1   b "))


class _FakeClient:
    def __init__(self, status: dict[str, Any]) -> None:
        self._status = status

    def status(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._status))


def _deployment(booted: bool, staged: bool = False) -> dict[str, Any]:
    return {"booted": booted, "staged": staged}


@pytest.mark.parametrize(
    ("deployments", "code"),
    [
        ([_deployment(False), _deployment(True)], 77),  # a new default waits for the reboot
        ([_deployment(False, staged=True), _deployment(True)], 77),
        ([_deployment(True), _deployment(False)], 0),  # the rollback is not pending
    ],
)
def test_status_booted_pending_exit_77_looks_at_every_deployment(
    monkeypatch: pytest.MonkeyPatch, deployments: list[dict[str, Any]], code: int
) -> None:
    import apt_ostree.cli.status as status_cli

    fake = _FakeClient({"deployments": deployments})
    monkeypatch.setattr(status_cli, "open_client", lambda sysroot: fake)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = main(["status", "-b", "--pending-exit-77", "-J", "$.deployments[*].booted"])
    assert result == code
    assert json.loads(out.getvalue()) == [True]  # -b printed the booted deployment alone


def test_update_driver_is_recorded_for_the_booted_system_only(tmp_path: Path) -> None:
    from apt_ostree.errors import AptOstreeError
    from apt_ostree.system.driver import read_driver, register_driver

    state = tmp_path / "run/apt-ostree/update-driver.json"
    with pytest.raises(AptOstreeError, match="needs the booted system"):
        register_driver(False, "Zincati", "zincati.service", state)
    assert not state.exists()
    register_driver(True, "Zincati", "zincati.service", state)
    assert read_driver(True, state) == {
        "driver-name": "Zincati", "driver-sd-unit": "zincati.service"
    }  # fmt: skip
    assert read_driver(False, state) is None  # an offline sysroot has no driver


def test_the_driver_unit_is_read_from_the_cgroup(tmp_path: Path) -> None:
    from apt_ostree.cli.deploy import caller_unit

    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/zincati.service\n")
    assert caller_unit(cgroup) == "zincati.service"
    cgroup.write_text("0::/user.slice/user-0.slice/session-3.scope\n")
    assert caller_unit(cgroup) == "session-3.scope"
