"""Signed composes, published with static deltas, pulled over HTTP.

A publisher composes two commits with `compose commit --gpg-sign` and runs
`compose publish`; the repo directory is served by a plain HTTP server. A
client made with `compose sysroot --remote-gpg-key` trusts that key for both
commits and summary, upgrades through the static delta, and refuses (one line
each, nothing deployed) an unsigned commit, a commit signed by another key, a
summary that is not signed, and a commit bound to another ref. Keys are made
at test time (`tests.fixtures.aptrepo.make_signing_key`), once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.compose.postprocess import PostprocessOptions, postprocess_tree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.signing import REF_BINDING_KEY, ed25519_available
from tests.fixtures.aptrepo import SigningKey
from tests.fixtures.deployments import fsck
from tests.fixtures.httprepo import OTHER_REF, HttpSysroot, serve
from tests.fixtures.sysroot import REF, apt_ostree, deployments_json
from tests.fixtures.trees import make_tree

PUBLISHED_REF = "signed/x86_64/base"


def _gpg_args(key: SigningKey) -> list[str]:
    return ["--gpg-sign", key.fingerprint, "--gpg-homedir", str(key.gnupghome)]


def _stop_agent(key: SigningKey) -> None:
    subprocess.run(["gpgconf", "--homedir", str(key.gnupghome), "--kill", "gpg-agent"],
                   capture_output=True, check=False)  # fmt: skip


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@dataclass
class Published:
    repo: Path
    v1: str
    v2: str
    tool: str  # the object of the binary that changed from v1 to v2


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Published:
    """v1 and v2 of PUBLISHED_REF, signed; v2 changes one 6 MB binary by a few bytes."""
    work = tmp_path_factory.mktemp("published")
    repo = work / "repo"
    root = make_tree(work / "root", kernel="6.1.0-signed", packages={"tool": "1.0"})
    tool = root / "usr/bin/tool"
    shutil.copy(os.path.realpath(sys.executable), tool)
    postprocess_tree(root, PostprocessOptions())
    commits = []
    try:
        for version in ("1", "2"):
            if version == "2":
                data = bytearray(tool.read_bytes())
                for offset in range(4096, len(data), len(data) // 8):
                    data[offset] ^= 0xFF
                tool.write_bytes(bytes(data))
            proc = apt_ostree(None, "compose", "commit", root, "--repo", repo, "--ref",
                              PUBLISHED_REF, "--add-metadata-string", f"version={version}",
                              *_gpg_args(signing_key))  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            commits.append(proc.stdout.split()[-1])
        proc = apt_ostree(None, "compose", "publish", "--repo", repo, PUBLISHED_REF,
                          *_gpg_args(signing_key))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert (
            proc.stdout
            == f"Generated static delta {commits[0]}-{commits[1]}\nWrote signed summary\n"
        )
    finally:
        _stop_agent(signing_key)
    listing = subprocess.run(["ostree", f"--repo={repo}", "ls", "-C", commits[1], "/usr/bin/tool"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    return Published(repo, commits[0], commits[1], listing.split()[4])


def test_a_composed_commit_is_signed_and_bound_to_its_ref(published: Published) -> None:
    repo = ostree_repo.open_repo(published.repo)
    assert ostree_repo.read_commit(repo, published.v2).metadata[REF_BINDING_KEY] == [PUBLISHED_REF]
    shown = subprocess.run(["ostree", f"--repo={published.repo}", "show", published.v2],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Found 1 signature" in shown
    assert (published.repo / "summary.sig").is_file()


def test_a_signed_compose_is_pulled_through_its_delta_and_deployed(
    published: Published, signing_key: SigningKey, tmpfs: Path
) -> None:
    sysroot = tmpfs / "sysroot"
    with serve(published.repo) as (url, log):
        proc = apt_ostree(None, "compose", "sysroot", sysroot, "--repo", published.repo,
                          "--ref", PUBLISHED_REF, "--revision", published.v1,
                          "--remote", f"origin={url}",
                          "--remote-gpg-key", signing_key.keyring)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        config = (sysroot / "ostree/repo/config").read_text()
        assert "gpg-verify=true" in config and "gpg-verify-summary=true" in config
        log.clear()
        proc = apt_ostree(sysroot, "upgrade")
        assert proc.returncode == 0, proc.stderr
        paths = log.paths()
    assert deployments_json(sysroot)[0]["checksum"] == published.v2
    assert "/summary.sig" in paths
    assert any(p.startswith("/deltas/") for p in paths), paths
    # The changed 6 MB binary comes from the delta's few-KB bsdiff, never as an object
    # (Debian 12's libostree fetched both; see docs/publishing.md).
    assert not [p for p in paths if published.tool in p], paths
    assert log.bytes_served() < 200_000, log.requests
    fsck(sysroot)


def test_compose_with_a_key_that_cannot_sign_fails_at_once_and_writes_nothing(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    root = make_tree(tmp_path / "root", packages={"tool": "1.0"})
    repo = tmp_path / "repo"
    proc = apt_ostree(None, "compose", "commit", root, "--repo", repo, "--ref", PUBLISHED_REF,
                      "--gpg-sign", "0123456789ABCDEF",
                      "--gpg-homedir", signing_key.gnupghome)  # fmt: skip
    _stop_agent(signing_key)
    assert _last_line(proc).startswith("error: cannot sign with GPG key 0123456789ABCDEF in ")
    assert not repo.exists()


def test_an_unsigned_summary_is_refused(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    served.update_summary(sign=False)
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert _last_line(proc) == (
        f'error: the summary of remote "origin" ({served.url}) is not signed by a key trusted'
        " for it (no signatures found)"
    )
    assert [d["checksum"] for d in deployments_json(http_sysroot.path)] == [served.commits["1"]]


def test_a_commit_signed_by_another_key_is_refused(
    http_sysroot: HttpSysroot, other_key: SigningKey
) -> None:
    served = http_sysroot.repo
    foreign = served.add_commit("4", tree_of=served.commits["3"], signed_by=other_key)
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert _last_line(proc) == (
        f'error: commit {foreign} is not signed by a key trusted for remote "origin"'
        f" (signed by unknown key {other_key.fingerprint[-16:]})"
    )
    assert [d["checksum"] for d in deployments_json(http_sysroot.path)] == [served.commits["1"]]


def test_a_commit_bound_to_another_ref_is_refused(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    # Validly signed, but published for another ref: a server replaying it here is refused.
    replayed = served.add_commit("4", tree_of=served.commits["3"], bound_to=OTHER_REF)
    proc = apt_ostree(http_sysroot.path, "upgrade")
    assert _last_line(proc) == (
        f'error: commit {replayed} of remote "origin" is bound to "{OTHER_REF}", not to "{REF}";'
        " refusing it"
    )
    assert [d["checksum"] for d in deployments_json(http_sysroot.path)] == [served.commits["1"]]
    fsck(http_sysroot.path)


def test_remote_add_verifies_the_summary_only_with_a_key(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    assert apt_ostree(http_sysroot.path, "remote", "add", "keyed", served.url,
                      "--gpg-import", served.key.keyring).returncode == 0  # fmt: skip
    assert apt_ostree(http_sysroot.path, "remote", "add", "nokey", served.url).returncode == 0
    config = (http_sysroot.ostree_repo / "config").read_text()
    keyed = config.split('[remote "keyed"]')[1].split("[")[0]
    nokey = config.split('[remote "nokey"]')[1].split("[")[0]
    assert "gpg-verify-summary=true" in keyed
    assert "gpg-verify-summary=false" in nokey


def test_ed25519_is_detected_from_the_library() -> None:
    version = subprocess.run(["ostree", "--version"], capture_output=True, text=True, check=True)
    assert ed25519_available() == ("sign-ed25519" in version.stdout)
