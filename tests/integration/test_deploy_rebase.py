"""`apt-ostree deploy REVISION` and `apt-ostree rebase REFSPEC` over HTTP, offline.

The served repo has `test/x86_64/base` at v3 (v1 -> v2 -> v3) and
`test/x86_64/other` with one commit, "other-1"; the sysroot starts at v1.
"""

from __future__ import annotations

import subprocess

from tests.fixtures.httprepo import OTHER_REF, HttpSysroot
from tests.fixtures.sysroot import REF, apt_ostree, deployments_json


def _origin(sysroot: HttpSysroot) -> str:
    d = deployments_json(sysroot.path)[0]
    path = sysroot.path / f"ostree/deploy/{d['osname']}/deploy/{d['checksum']}.{d['serial']}.origin"
    return path.read_text()


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def _unchanged(sysroot: HttpSysroot) -> None:
    [d] = deployments_json(sysroot.path)
    assert d["checksum"] == sysroot.repo.commits["1"]
    assert d["origin"] == f"origin:{REF}"


# -- deploy REVISION -------------------------------------------------------------


def test_deploy_by_checksum_prefix(http_sysroot: HttpSysroot) -> None:
    v2 = http_sysroot.repo.commits["2"]
    proc = apt_ostree(http_sysroot.path, "deploy", v2[:10])
    assert proc.returncode == 0, proc.stderr
    new, old = deployments_json(http_sysroot.path)
    assert (new["checksum"], new["version"]) == (v2, "2")
    assert old["checksum"] == http_sysroot.repo.commits["1"]
    assert f"override-commit={v2}" in _origin(http_sysroot)
    assert f"refspec=origin:{REF}" in _origin(http_sysroot)


def test_deploy_by_version(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "deploy", "version=2")
    assert proc.returncode == 0, proc.stderr
    assert "Upgraded:\n  pkg-b 1.0 -> 2.0\n" in proc.stdout
    assert deployments_json(http_sysroot.path)[0]["checksum"] == http_sysroot.repo.commits["2"]
    fsck = subprocess.run(
        ["ostree", "fsck", f"--repo={http_sysroot.ostree_repo}"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_deploy_by_revision_equals_checksum(http_sysroot: HttpSysroot) -> None:
    v3 = http_sysroot.repo.commits["3"]
    proc = apt_ostree(http_sysroot.path, "deploy", f"revision={v3}")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["checksum"] == v3


def test_deploy_an_older_version_is_allowed(http_sysroot: HttpSysroot) -> None:
    assert apt_ostree(http_sysroot.path, "upgrade").returncode == 0
    proc = apt_ostree(http_sysroot.path, "deploy", "version=1")
    assert proc.returncode == 0, proc.stderr
    assert "Downgraded:\n  pkg-b 2.0 -> 1.0\n" in proc.stdout
    assert deployments_json(http_sysroot.path)[0]["checksum"] == http_sysroot.repo.commits["1"]


def test_deploy_of_the_deployed_commit_is_unchanged(http_sysroot: HttpSysroot) -> None:
    v1 = http_sysroot.repo.commits["1"]
    proc = apt_ostree(http_sysroot.path, "deploy", "version=1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"No change: {v1} is already deployed."
    assert apt_ostree(http_sysroot.path, "deploy", v1, "--unchanged-exit-77").returncode == 77
    _unchanged(http_sysroot)


def test_deploy_of_an_unknown_version_is_an_error(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "deploy", "version=9")
    assert _error(proc) == f'error: version "9" is not in the history of origin:{REF}'
    _unchanged(http_sysroot)


def test_deploy_of_an_unknown_revision_is_an_error(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "deploy", "0000000000")
    assert _error(proc).startswith(
        f'error: revision "0000000000" is not in the history of origin:{REF}'
    )
    proc = apt_ostree(http_sysroot.path, "deploy", "no-such-thing")
    assert _error(proc).startswith('error: invalid revision "no-such-thing"')
    proc = apt_ostree(http_sysroot.path, "deploy", "--skip-branch-check", "0" * 64)
    assert _error(proc) == (
        f'error: "{"0" * 64}" is not in remote "origin" ({http_sysroot.repo.url})'
    )
    _unchanged(http_sysroot)


def test_deploy_of_a_commit_from_another_ref_is_refused(http_sysroot: HttpSysroot) -> None:
    other = http_sysroot.repo.commits["other-1"]
    proc = apt_ostree(http_sysroot.path, "deploy", other)
    assert _error(proc) == (
        f"error: commit {other} is not in the history of origin:{REF};"
        " use --skip-branch-check to deploy it anyway"
    )
    _unchanged(http_sysroot)


def test_deploy_skip_branch_check_accepts_a_commit_from_another_ref(
    http_sysroot: HttpSysroot,
) -> None:
    other = http_sysroot.repo.commits["other-1"]
    proc = apt_ostree(http_sysroot.path, "deploy", "--skip-branch-check", other)
    assert proc.returncode == 0, proc.stderr
    new = deployments_json(http_sysroot.path)[0]
    assert new["checksum"] == other
    assert new["origin"] == f"origin:{REF}"


def test_deploy_refuses_an_unsigned_commit(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    unsigned = served.add_commit("4", tree_of=served.commits["2"], sign=False)
    proc = apt_ostree(http_sysroot.path, "deploy", "version=4")
    assert _error(proc).startswith(f"error: commit {unsigned} is not signed by a key trusted")
    _unchanged(http_sysroot)


# -- rebase ----------------------------------------------------------------------


def test_rebase_to_another_ref_of_the_same_remote(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", OTHER_REF)
    assert proc.returncode == 0, proc.stderr
    assert f"Rebased from origin:{REF} to origin:{OTHER_REF}" in proc.stdout
    new, old = deployments_json(http_sysroot.path)
    assert (new["checksum"], new["origin"]) == (
        http_sysroot.repo.commits["other-1"],
        f"origin:{OTHER_REF}",
    )
    assert old["origin"] == f"origin:{REF}"
    # The old remote ref is purged from the local repo; the rollback keeps its commit.
    refs = subprocess.run(
        ["ostree", "refs", f"--repo={http_sysroot.ostree_repo}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert f"origin:{REF}" not in refs and f"origin:{OTHER_REF}" in refs


def test_rebase_to_a_remote_and_ref(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", "--skip-purge", f"origin:{OTHER_REF}")
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["origin"] == f"origin:{OTHER_REF}"
    refs = subprocess.run(
        ["ostree", "refs", f"--repo={http_sysroot.ostree_repo}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert f"origin:{REF}" in refs


def test_rebase_with_branch_and_remote_options(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    add = apt_ostree(http_sysroot.path, "remote", "add", "mirror", served.url,
                     "--gpg-import", served.key.keyring)  # fmt: skip
    assert add.returncode == 0, add.stderr
    proc = apt_ostree(http_sysroot.path, "rebase", "-m", "mirror", "-b", OTHER_REF)
    assert proc.returncode == 0, proc.stderr
    assert deployments_json(http_sysroot.path)[0]["origin"] == f"mirror:{OTHER_REF}"


def test_rebase_to_a_revision_of_the_new_ref(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    newer = served.add_commit("other-2", tree_of=served.commits["2"], ref=OTHER_REF)
    proc = apt_ostree(http_sysroot.path, "rebase", OTHER_REF, "version=other-1")
    assert proc.returncode == 0, proc.stderr
    new = deployments_json(http_sysroot.path)[0]
    assert new["checksum"] == served.commits["other-1"] != newer
    assert f"override-commit={served.commits['other-1']}" in _origin(http_sysroot)


def test_rebase_to_a_ref_not_in_the_remote_is_a_one_line_error(
    http_sysroot: HttpSysroot,
) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", "test/x86_64/nope")
    assert _error(proc) == (
        f'error: ref "test/x86_64/nope" is not in remote "origin" ({http_sysroot.repo.url})'
    )
    _unchanged(http_sysroot)


def test_rebase_to_an_unknown_remote_is_an_error(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", f"nowhere:{OTHER_REF}")
    assert _error(proc) == 'error: remote "nowhere" is not configured; see "apt-ostree remote list"'
    _unchanged(http_sysroot)


def test_rebase_to_a_bad_refspec_is_an_error(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", "origin:")
    assert _error(proc) == 'error: invalid refspec "origin:": expected REMOTE:REF or REF'
    proc = apt_ostree(http_sysroot.path, "rebase", "origin:bad ref")
    assert _error(proc).startswith('error: invalid ref "bad ref": ')
    proc = apt_ostree(http_sysroot.path, "rebase", f"origin:{REF}")
    assert _error(proc) == f"error: old and new refs are equal: origin:{REF}"
    _unchanged(http_sysroot)


def test_rebase_refuses_an_unsigned_commit(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    unsigned = served.add_commit("other-2", tree_of=served.commits["2"], ref=OTHER_REF, sign=False)
    proc = apt_ostree(http_sysroot.path, "rebase", OTHER_REF)
    assert _error(proc).startswith(f"error: commit {unsigned} is not signed by a key trusted")
    _unchanged(http_sysroot)
