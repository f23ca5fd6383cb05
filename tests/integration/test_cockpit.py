"""The Cockpit page (data/cockpit/apt-ostree) in headless Chromium, served by the
real cockpit-ws and cockpit-bridge, over apt-ostreed on a private bus with the
real polkitd (tests/fixtures/cockpit.py, tests/fixtures/daemon.py).

One browser session walks through the page as an administrator would: the page
lists what `status --json` lists; an upgrade shows its progress (the remote
holds the pull until the test lets it go) and can be cancelled; a check shows
the available update; an upgrade ends with the new deployment as the default;
the package diff of two deployments; rollback swaps the default; kernel
arguments edited on the page make a new deployment; an action polkit refuses
shows polkit's refusal; the page fits a phone's width. The bridge runs as
`nobody`, whom the test's polkit rules allow to upgrade, roll back and change
kernel arguments, nothing else. Screenshots of each state are kept under the
test's tmp dir (paths printed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fixtures.cockpit import CockpitPage
from tests.fixtures.daemon import NOBODY, Daemon, Gate
from tests.fixtures.sysroot import SysrootFixture, deployments_json

RULES = """
polkit.addRule(function(action, subject) {
    if (subject.user == "nobody" &&
        (action.id == "org.aptostree.dev.upgrade" ||
         action.id == "org.aptostree.dev.rollback" ||
         action.id == "org.aptostree.dev.bootconfig")) {
        return polkit.Result.YES;
    }
});
"""
PHONE = (375, 812)


def _checksums(page: CockpitPage) -> list[str]:
    return [d["checksum"] for d in page.deployments()]


def _shows_progress(page: CockpitPage) -> Any:
    """The task the progress card names; None while it says "Starting…", which it does
    until the daemon's first TaskBegin signal reaches the browser."""
    task = page.driver.execute_script(
        "const t = document.getElementById('progress-task'); return t && t.textContent"
    )
    return None if task == "Starting…" else task


def test_the_page_manages_deployments_through_apt_ostreed(
    daemon: Daemon, sysroot: SysrootFixture, gated_remote: Gate,
    polkitd: Callable[[str], None], cockpit_ws: Callable[[tuple[str, str]], str],
    cockpit_page: Callable[[str], CockpitPage],
) -> None:  # fmt: skip
    polkitd(RULES)
    page = cockpit_page(cockpit_ws(NOBODY))
    v1, v3 = sysroot.repo.commits["1"], sysroot.repo.commits["3"]

    # The deployments `status --json` lists, in its order, with what it says of them.
    status = deployments_json(sysroot.path)
    assert _checksums(page) == [d["checksum"] for d in status] == [v1]
    shown = page.text("#deployments")
    for d in status:
        assert d["origin"] in shown and " ".join(d["kernel-arguments"]) in shown
    page.screenshot("deployments")

    # An upgrade in its pull shows progress and can be cancelled: nothing changes.
    page.click("#upgrade")
    assert gated_remote.waiting.wait(60)
    task = page.wait(lambda d: _shows_progress(page), "the upgrade's progress")
    assert task == "Pulling origin:test/x86_64/base"
    page.screenshot("upgrade-in-progress")
    page.click("#cancel")
    page.wait(lambda d: "Cancelling" in page.text("#cancel"), "the Cancel button to answer")
    gated_remote.release()
    page.wait(lambda d: d.find_elements("css selector", "#error"), "the cancellation")
    assert page.text("#error").startswith("error: cancelled")
    assert _checksums(page) == [v1] and len(deployments_json(sysroot.path)) == 1

    # Check for updates: the available update, with its package diff; nothing deployed.
    page.click("#check")
    page.wait(
        lambda d: d.find_elements("css selector", "#available-update"), "the available update"
    )
    assert "Version\n3 (" in page.text("#available-update")
    assert "1 upgraded, 1 added" in page.text("#available-update")
    assert _checksums(page) == [v1] and len(deployments_json(sysroot.path)) == 1

    # The upgrade, to its end: the new deployment is the default.
    page.click("#upgrade")
    page.wait(lambda d: _checksums(page) == [v3, v1], "the new deployment")
    assert [d["checksum"] for d in deployments_json(sysroot.path)] == [v3, v1]
    assert "default" in page.deployments()[0]["labels"]
    assert page.deployments()[0]["title"].startswith("3")
    page.screenshot("upgraded")

    # The package diff of the two deployments, from the daemon's DbDiff.
    page.click("#diff-form button")
    page.wait(lambda d: d.find_elements("css selector", "#diff table"), "the package diff")
    rows = [line.split() for line in page.text("#diff tbody").splitlines()]
    assert rows == [["upgraded", "pkg-b", "1.0", "2.0"], ["added", "pkg-c", "1.0"]]

    # Rollback swaps the default.
    page.click("#rollback")
    page.wait(lambda d: _checksums(page) == [v1, v3], "the rollback")
    assert [d["checksum"] for d in deployments_json(sysroot.path)] == [v1, v3]

    # Kernel arguments edited in the field: a new deployment with them.
    before_kargs = deployments_json(sysroot.path)
    kargs = page.driver.find_element("css selector", "#kargs")
    assert kargs.get_attribute("value") == "root=LABEL=root quiet"
    page.driver.execute_script("arguments[0].value = 'root=LABEL=root page=yes'", kargs)
    page.click("#kargs-apply")
    page.wait(lambda d: "page=yes" in page.text("#deployments li"), "the new deployment")
    default = deployments_json(sysroot.path)[0]
    # The same commit, a new deployment (serial) of it.
    assert default["checksum"] == _checksums(page)[0] == v1
    assert default["id"] not in [d["id"] for d in before_kargs]
    assert "page=yes" in default["kernel-arguments"] and "quiet" not in default["kernel-arguments"]
    after_kargs = deployments_json(sysroot.path)

    # polkit says no to a cleanup by nobody: the page shows its line, nothing changes.
    page.click("#cleanup-rollback")
    page.wait(lambda d: d.find_elements("css selector", "#error"), "the refusal")
    assert page.text("#error").splitlines()[0] == (
        "error: not authorized: org.aptostree.dev.cleanup (uid 65534; authentication required)"
    )
    assert deployments_json(sysroot.path) == after_kargs
    page.screenshot("refused")

    # A phone's width: nothing sticks out sideways.
    page.driver.set_window_size(*PHONE)
    # (PatternFly's page clips sideways overflow, so ask every element where it ends.)
    wider = page.driver.execute_script(
        """return [...document.querySelectorAll('#apt-ostree *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    assert wider == []
    page.screenshot("phone")
