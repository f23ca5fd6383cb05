"""Who may change the system through apt-ostreed: root always; anyone else as the
real polkitd decides, with apt-ostree's policy file and a rules file of the test
(polkitd runs on the private bus, in a mount namespace of its own)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.daemon import NOBODY, Daemon
from tests.fixtures.sysroot import SysrootFixture, deployments_json

# nobody may change kernel arguments and layer packages by name, nothing else.
RULES = """
polkit.addRule(function(action, subject) {
    if (subject.user == "nobody" &&
        (action.id == "org.aptostree.dev.bootconfig" ||
         action.id == "org.aptostree.dev.install-uninstall-packages")) {
        return polkit.Result.YES;
    }
});
"""


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_user_granted_an_action_by_a_rule_may_do_it(
    daemon: Daemon, sysroot: SysrootFixture, polkitd: Callable[[str], None]
) -> None:
    polkitd(RULES)
    proc = daemon.cli("kargs", "--append=granted=yes", user=NOBODY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Kernel arguments updated.\n"
    assert "granted=yes" in deployments_json(sysroot.path)[0]["kernel-arguments"]


def test_a_user_without_the_grant_is_refused_with_the_actions_name(
    daemon: Daemon, sysroot: SysrootFixture, polkitd: Callable[[str], None]
) -> None:
    polkitd(RULES)
    before = deployments_json(sysroot.path)
    for args, action in (
        (("upgrade",), "upgrade"),
        (("rollback",), "rollback"),
        (("cleanup", "-b"), "cleanup"),
        (("deploy", "version=2"), "deploy"),
        (("refresh-md",), "repo-refresh"),
        (("override", "remove", "pkg-a"), "override"),
    ):
        proc = daemon.cli(*args, user=NOBODY)
        assert proc.returncode == 1, args
        # polkit would ask an administrator's password; nobody has no agent.
        assert _errors(proc.stderr) == [
            f"error: not authorized: org.aptostree.dev.{action} (uid 65534;"
            " authentication required)"
        ], args
    assert deployments_json(sysroot.path) == before


def test_every_action_a_request_needs_must_be_granted(
    daemon: Daemon, sysroot: SysrootFixture, polkitd: Callable[[str], None],
    layer_debs: dict[str, Path],
) -> None:  # fmt: skip
    polkitd(RULES)
    # Names are granted, local files are not: the file is refused, not the names.
    public = Path(tempfile.mkdtemp())
    public.chmod(0o755)
    deb = public / "dep-bottom.deb"
    shutil.copy(layer_debs["dep-bottom"], deb)
    deb.chmod(0o644)
    try:
        proc = daemon.cli("install", "pkg-x", deb, user=NOBODY)
    finally:
        shutil.rmtree(public)
    assert _errors(proc.stderr) == [
        "error: not authorized: org.aptostree.dev.install-local-packages (uid 65534;"
        " authentication required)"
    ]
    assert len(deployments_json(sysroot.path)) == 1


def test_root_needs_no_rule(
    daemon: Daemon, sysroot: SysrootFixture, polkitd: Callable[[str], None]
) -> None:
    polkitd("")
    proc = daemon.cli("kargs", "--append=byroot=yes")
    assert proc.returncode == 0, proc.stderr
    assert len(deployments_json(sysroot.path)) == 2
