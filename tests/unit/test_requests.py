"""Requests: what a change asks for, its types, and the polkit actions it needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from apt_ostree.requests import ACTION_PREFIX, ACTIONS, LocalPackage, Request, RequestError

POLICY = Path(__file__).resolve().parents[2] / "data/polkit-1/actions/org.aptostree.dev.policy"


def test_the_policy_file_defines_every_action_the_daemon_asks_for() -> None:
    root = ET.parse(POLICY).getroot()
    ids = [a.get("id") for a in root.iter("action")]
    assert ids == [ACTION_PREFIX + a for a in ACTIONS]
    for action in root.iter("action"):
        defaults = action.find("defaults")
        assert defaults is not None
        assert defaults.findtext("allow_active") == "auth_admin_keep"
        assert defaults.findtext("allow_any") == defaults.findtext("allow_inactive") == "auth_admin"


@pytest.mark.parametrize(
    ("request_", "actions"),
    [
        (Request("Upgrade"), ["upgrade"]),
        (Request("Upgrade", [], {"install-packages": ["htop"]}),
         ["upgrade", "install-uninstall-packages"]),
        (Request("Deploy", ["version=2"]), ["deploy"]),
        (Request("Rebase", ["other:ref", ""]), ["rebase"]),
        (Request("PkgChange", [["htop"], []]), ["install-uninstall-packages"]),
        (Request("PkgChange", [[], []], {"install-local-packages": [LocalPackage("x.deb")]}),
         ["install-local-packages"]),
        (Request("PkgChange", [[], []], {"override-remove": ["nano"]}), ["override"]),
        (Request("PkgChange", [[], []], {"reset-layering": True, "override-reset-all": True}),
         ["install-uninstall-packages", "override"]),
        (Request("PkgChange", [[], []], {"reset-layering": True, "override-reset-all": True,
                                         "reset-initramfs": True}),
         ["install-uninstall-packages", "override", "bootconfig"]),
        (Request("PkgChange", [[], []], {"reset-initramfs": True}), ["bootconfig"]),
        (Request("SetInitramfsState", [True, ["-v"]]), ["bootconfig"]),
        (Request("InitramfsEtc", [["/etc/x"], [], False, False]), ["bootconfig"]),
        (Request("KernelArgs", [["quiet"], []]), ["bootconfig"]),
        (Request("KernelArgs", [["quiet"], []], {"lock-finalization": True}), ["bootconfig"]),
        (Request("FinalizeDeployment", [], {"checksum": "ab"}), ["finalize-deployment"]),
        (Request("ApplyLive", [], {"reset": True}), ["apply-live"]),
        (Request("PkgChange", [["htop"], []], {"apply-live": True}),
         ["install-uninstall-packages", "apply-live"]),
        (Request("Rollback"), ["rollback"]),
        (Request("Cleanup", [["base"]]), ["cleanup"]),
        (Request("RefreshMd"), ["repo-refresh"]),
    ],
)  # fmt: skip
def test_each_request_needs_the_actions_of_what_it_changes(
    request_: Request, actions: list[str]
) -> None:
    assert request_.actions() == [ACTION_PREFIX + a for a in actions]


def test_options_of_the_wrong_type_or_unknown_are_refused() -> None:
    with pytest.raises(RequestError, match='option "allow-downgrade" must be of type b'):
        Request("Upgrade", [], {"allow-downgrade": 1}).check_types()
    with pytest.raises(RequestError, match='unknown option "reboot"'):
        Request("Upgrade", [], {"reboot": True}).check_types()
    with pytest.raises(RequestError, match='argument "append" must be of type as'):
        Request("KernelArgs", ["quiet", []]).check_types()
