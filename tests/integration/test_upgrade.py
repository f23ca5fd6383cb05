"""`apt-ostree upgrade` over HTTP, on offline sysroots.

The remote is an archive repo served on loopback by the test, with GPG-signed
commits (`tests.fixtures.httprepo`); the sysroot starts at v1.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from apt_ostree.system import bootfailures
from apt_ostree.system.db import compare_versions
from tests.fixtures.deployments import fsck
from tests.fixtures.httprepo import HttpRepo, HttpSysroot, make_http_sysroot
from tests.fixtures.sysroot import REF, apt_ostree, deployments_json, ostree_admin_status


def _content_paths(paths: list[str]) -> list[str]:
    return [p for p in paths if p.endswith((".filez", ".dirtree", ".dirmeta"))]


def test_upgrade_deploys_the_new_commit_and_keeps_the_old_one_as_rollback(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert "Upgraded:\n  pkg-b 1.0 -> 2.0\n" in proc.stdout
    assert f"Deployed {served.commits['2']} (version 2)" in proc.stdout
    new, old = deployments_json(http_sysroot.path)
    assert (new["checksum"], new["version"]) == (served.commits["2"], "2")
    assert old["checksum"] == served.commits["1"]
    assert new["origin"] == old["origin"] == f"origin:{REF}"
    assert served.commits["2"] in ostree_admin_status(http_sysroot.path)
    fsck(http_sysroot.path)


def test_upgrade_reports_progress_on_stderr_and_keeps_stdout_for_results(
    http_sysroot: HttpSysroot,
) -> None:
    http_sysroot.repo.set_tip(http_sysroot.repo.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert f"Pulling origin:{REF}" in proc.stderr
    assert "fetched" in proc.stderr
    assert "Pulling" not in proc.stdout


def test_upgrade_without_a_new_commit_says_so(http_sysroot: HttpSysroot) -> None:
    http_sysroot.repo.set_tip(http_sysroot.repo.commits["1"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "No upgrade available."
    assert len(deployments_json(http_sysroot.path)) == 1


def test_upgrade_unchanged_exit_77_after_a_complete_upgrade(http_sysroot: HttpSysroot) -> None:
    assert apt_ostree(http_sysroot.path, "upgrade").returncode == 0
    proc = apt_ostree(http_sysroot.path, "upgrade", "--unchanged-exit-77")
    assert proc.returncode == 77, proc.stderr
    assert proc.stdout.strip() == "No upgrade available."
    assert len(deployments_json(http_sysroot.path)) == 2


def test_upgrade_check_exits_0_when_an_update_is_available(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade", "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("AvailableUpdate:\n")
    assert f"Commit: {served.commits['2']}" in proc.stdout
    assert "Version: 2 (" in proc.stdout
    assert "Diff: 1 upgraded" in proc.stdout
    # Only commit objects were fetched, and nothing was deployed.
    assert served.log.paths()
    assert _content_paths(served.log.paths()) == []
    assert len(deployments_json(http_sysroot.path)) == 1


def test_upgrade_after_check_fetches_the_rest_of_the_commit(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    assert apt_ostree(http_sysroot.path, "upgrade", "--check").returncode == 0
    served.log.clear()
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert _content_paths(served.log.paths())
    assert deployments_json(http_sysroot.path)[0]["checksum"] == served.commits["2"]
    fsck(http_sysroot.path)


def test_upgrade_check_exits_77_without_an_update(http_sysroot: HttpSysroot) -> None:
    http_sysroot.repo.set_tip(http_sysroot.repo.commits["1"])
    proc = apt_ostree(http_sysroot.path, "upgrade", "--check")
    assert proc.returncode == 77, proc.stderr
    assert proc.stdout.strip() == "No updates available."


def test_upgrade_preview_shows_the_package_diff_and_deploys_nothing(
    http_sysroot: HttpSysroot,
) -> None:
    proc = apt_ostree(http_sysroot.path, "upgrade", "--preview")
    assert proc.returncode == 0, proc.stderr
    assert "Upgraded:\n  pkg-b 1.0 -> 2.0\n" in proc.stdout
    assert "Added:\n  pkg-c_1.0_amd64\n" in proc.stdout
    assert _content_paths(http_sysroot.repo.log.paths()) == []
    assert len(deployments_json(http_sysroot.path)) == 1


def test_upgrade_uses_a_static_delta_when_the_remote_has_one(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    served.generate_delta(served.commits["1"], served.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    paths = served.log.paths()
    assert any(p.startswith("/deltas/") and p.endswith("/superblock") for p in paths), paths
    assert _content_paths(paths) == []
    assert deployments_json(http_sysroot.path)[0]["checksum"] == served.commits["2"]
    fsck(http_sysroot.path)


def test_upgrade_refuses_an_unsigned_commit_and_deploys_nothing(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    unsigned = served.add_commit("4", tree_of=served.commits["3"], sign=False)
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: commit {unsigned} is not signed by a key trusted for remote "origin"'
        " (no signatures found)"
    )
    [d] = deployments_json(http_sysroot.path)
    assert d["checksum"] == served.commits["1"]
    fsck(http_sysroot.path)


def test_upgrade_refuses_a_commit_signed_by_an_untrusted_key(
    http_sysroot: HttpSysroot, tmp_path: Path
) -> None:
    from tests.fixtures.aptrepo import make_signing_key
    from tests.fixtures.httprepo import sign_commit

    served = http_sysroot.repo
    stranger = make_signing_key(tmp_path / "stranger", uid="stranger")
    commit = served.add_commit("4", tree_of=served.commits["3"], sign=False)
    sign_commit(served.path, commit, stranger)
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error == (
        f'error: commit {commit} is not signed by a key trusted for remote "origin"'
        f" (signed by unknown key {stranger.fingerprint[-16:]})"
    ), error
    assert len(deployments_json(http_sysroot.path)) == 1


def test_upgrade_accepts_a_commit_signed_by_the_imported_key(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    signed = served.add_commit("4", tree_of=served.commits["3"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["checksum"] == signed


def test_upgrade_from_an_unreachable_remote_is_a_one_line_error(
    tmpfs: Path, http_repo: HttpRepo
) -> None:
    sysroot = make_http_sysroot(tmpfs / "sysroot", http_repo, revision=http_repo.commits["1"])
    config = sysroot.ostree_repo / "config"
    config.write_text(config.read_text().replace(http_repo.url, "http://127.0.0.1:1/repo"))
    proc = apt_ostree(sysroot.path, "upgrade")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        'error: cannot reach remote "origin" (http://127.0.0.1:1/repo): Couldn\'t connect to server'
    ], proc.stderr
    assert len(deployments_json(sysroot.path)) == 1


def test_upgrade_refuses_an_older_commit_unless_allow_downgrade(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    older = served.add_commit(
        "0-old", tree_of=served.commits["2"], timestamp=int(time.time()) - 86400 * 365
    )
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: the new commit {older} (")
    assert error.endswith("use --allow-downgrade to deploy it anyway")
    assert len(deployments_json(http_sysroot.path)) == 1
    proc = apt_ostree(http_sysroot.path, "upgrade", "--allow-downgrade")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["checksum"] == older


def test_upgrade_reboot_is_refused_on_an_offline_sysroot(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "upgrade", "--reboot")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: --reboot needs the booted system; {http_sysroot.path} is an offline sysroot"
    )
    assert len(deployments_json(http_sysroot.path)) == 1


def test_upgrade_after_deploy_revision_clears_the_override(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    assert apt_ostree(http_sysroot.path, "deploy", "version=2").returncode == 0
    origin = (Path(str(_deployment_dir(http_sysroot)) + ".origin")).read_text()
    assert f"override-commit={served.commits['2']}" in origin
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["checksum"] == served.commits["3"]
    assert "override-commit" not in Path(str(_deployment_dir(http_sysroot)) + ".origin").read_text()


def _deployment_dir(sysroot: HttpSysroot) -> Path:
    status = deployments_json(sysroot.path)[0]
    return (
        sysroot.path
        / f"ostree/deploy/{sysroot.osname}/deploy/{status['checksum']}.{status['serial']}"
    )


def test_debian_version_order_matches_dpkg() -> None:
    versions = ["1.0", "1.0-1", "1:0.9", "1.0~rc1", "1.0+b1", "1.0.1", "1.00", "0.9.10", "a"]
    for a in versions:
        for b in versions:
            ours = compare_versions(a, b)
            op = "lt" if ours < 0 else "eq" if ours == 0 else "gt"
            dpkg = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False)
            assert dpkg.returncode == 0, (a, op, b)


def test_upgrade_to_a_commit_that_failed_to_boot_warns_and_clears_the_report(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    failure: dict[str, object] = {
               "deployment": f"debian-{served.commits['2']}.0", "osname": "debian",
               "checksum": served.commits["2"], "base-checksum": served.commits["2"],
               "version": "2", "kernel-arguments": [], "time": "2026-01-01T00:00:00Z",
               "reason": "did not reach boot-complete.target", "check": None,
               "rolled-back-to": "debian-x.0"}  # fmt: skip
    bootfailures.record_failure(http_sysroot.path, "debian", failure)
    status = json.loads(apt_ostree(http_sysroot.path, "status", "--json").stdout)
    assert status["boot-failure"] == failure
    served.set_tip(served.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"warning: a deployment of {served.commits['2'][:12]} (version 2) failed to boot at"
        " 2026-01-01T00:00:00Z and was rolled back (did not reach boot-complete.target);"
        " it boots on probation again"
    ) in proc.stderr + proc.stdout
    status = json.loads(apt_ostree(http_sysroot.path, "status", "--json").stdout)
    assert status["boot-failure"] is None
