"""The combined package flags of rpm-ostree reach the system as one request:
install --uninstall, uninstall --install, override remove --replace, override
replace --remove, override reset -a (one PkgChange, so one new deployment)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.cli.main import main
from apt_ostree.requests import Request


class _Recorder:
    booted = False

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def transact(self, request: Request, reporter: Any) -> dict[str, Any]:
        request.check_types()
        self.requests.append(request)
        return {"changed": False}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    import apt_ostree.cli.packages as packages_cli

    recorder = _Recorder()
    monkeypatch.setattr(packages_cli, "open_client", lambda sysroot: recorder)
    return recorder


def _run(*argv: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(["--sysroot", "/s", *argv])


def test_install_with_uninstall_is_one_package_change(recorder: _Recorder) -> None:
    assert _run("install", "htop", "--uninstall", "vim", "--stateroot", "os2") == 0
    [r] = recorder.requests
    assert (r.method, r.args, r.osname) == ("PkgChange", [["htop"], ["vim"]], "os2")


def test_uninstall_with_install_is_one_package_change(recorder: _Recorder) -> None:
    assert _run("uninstall", "vim", "--install", "htop", "--install", "tree") == 0
    [r] = recorder.requests
    assert r.args == [["htop", "tree"], ["vim"]]


def test_override_remove_with_replace_and_replace_with_remove(
    recorder: _Recorder, tmp_path: Path
) -> None:
    deb = tmp_path / "hostname_99.0_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    assert _run("override", "remove", "nano", "--replace", str(deb)) == 0
    assert _run("override", "replace", str(deb), "--remove", "nano") == 0
    for r in recorder.requests:
        assert r.options["override-remove"] == ["nano"]
        assert [p.label for p in r.options["override-replace-local"]] == [str(deb)]


def test_override_reset_a_resets_every_override(recorder: _Recorder) -> None:
    assert _run("override", "reset", "-a") == 0
    [r] = recorder.requests
    assert r.options == {"override-reset-all": True}


def test_override_replace_takes_names_and_local_debs_together(
    recorder: _Recorder, tmp_path: Path
) -> None:
    deb = tmp_path / "hostname_99.0_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    assert _run("override", "replace", "bash=5.2-1", str(deb)) == 0
    assert _run("override", "remove", "nano", "--replace", "bash=5.2-1", "--replace", str(deb)) == 0
    for r in recorder.requests:
        assert r.options["override-replace"] == ["bash=5.2-1"]
        assert [p.label for p in r.options["override-replace-local"]] == [str(deb)]
