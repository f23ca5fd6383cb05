"""`apt-ostree remote add|list|delete` on the sysroot's repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.httprepo import OTHER_REF, HttpSysroot
from tests.fixtures.sysroot import SysrootFixture, apt_ostree


def _remotes(sysroot: Path) -> list[str]:
    proc = apt_ostree(sysroot, "remote", "list")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _config(sysroot: Path, remote: str, key: str) -> str:
    return subprocess.run(
        ["ostree", "config", f"--repo={sysroot}/ostree/repo", "get", f'remote "{remote}".{key}'],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr.strip()


def test_remote_list_shows_the_origin_remote(sysroot: SysrootFixture) -> None:
    assert _remotes(sysroot.path) == ["origin"]
    proc = apt_ostree(sysroot.path, "remote", "list", "-u")
    assert proc.stdout.split() == ["origin", sysroot.repo.url]


def test_remote_add_verifies_gpg_by_default(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "add", "mirror", "https://example.invalid/repo")
    assert proc.returncode == 0, proc.stderr
    assert _remotes(sysroot.path) == ["mirror", "origin"]
    assert _config(sysroot.path, "mirror", "url") == "https://example.invalid/repo"
    assert _config(sysroot.path, "mirror", "gpg-verify") == "true"


def test_remote_add_no_gpg_verify(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "add", "--no-gpg-verify", "plain", "http://x/r")
    assert proc.returncode == 0, proc.stderr
    assert _config(sysroot.path, "plain", "gpg-verify") == "false"


def test_remote_add_existing_name_is_an_error(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "add", "origin", "http://example.invalid/")
    assert _error(proc) == 'error: remote "origin" already exists'
    assert _config(sysroot.path, "origin", "url") == sysroot.repo.url


def test_remote_add_bad_url_or_name_is_an_error(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "add", "mirror", "ftp://example.invalid/")
    assert _error(proc).startswith('error: invalid remote URL "ftp://example.invalid/"')
    proc = apt_ostree(sysroot.path, "remote", "add", "a/b", "http://example.invalid/")
    assert _error(proc).startswith('error: invalid remote name "a/b"')
    assert _remotes(sysroot.path) == ["origin"]


def test_remote_add_with_a_missing_or_bad_key_file_adds_nothing(
    sysroot: SysrootFixture, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.gpg"
    proc = apt_ostree(sysroot.path, "remote", "add", "mirror", "http://x/", "--gpg-import", missing)
    assert _error(proc) == f"error: cannot import GPG keys from {missing}: no such file"
    garbage = tmp_path / "garbage.gpg"
    garbage.write_text("not a key\n")
    proc = apt_ostree(sysroot.path, "remote", "add", "mirror", "http://x/", "--gpg-import", garbage)
    assert _error(proc).startswith("error: ")
    assert _remotes(sysroot.path) == ["origin"]
    assert not (sysroot.path / "ostree/repo/mirror.trustedkeys.gpg").exists()


def test_remote_delete(sysroot: SysrootFixture) -> None:
    assert apt_ostree(sysroot.path, "remote", "add", "mirror", "http://x/").returncode == 0
    proc = apt_ostree(sysroot.path, "remote", "delete", "mirror")
    assert proc.returncode == 0, proc.stderr
    assert _remotes(sysroot.path) == ["origin"]


def test_remote_delete_unknown_is_an_error(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "delete", "nowhere")
    assert _error(proc) == 'error: remote "nowhere" does not exist'


def test_remote_delete_of_the_origin_remote_is_refused(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "remote", "delete", "origin")
    assert _error(proc) == (
        'error: remote "origin" is used by deployment 0 (origin:test/x86_64/base);'
        " rebase to another remote first"
    )
    assert _remotes(sysroot.path) == ["origin"]


def test_remote_with_imported_key_accepts_signed_commits(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    proc = apt_ostree(http_sysroot.path, "remote", "add", "signed", served.url,
                      "--gpg-import", served.key.keyring)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 GPG key(s) imported" in proc.stdout
    proc = apt_ostree(http_sysroot.path, "rebase", f"signed:{OTHER_REF}")
    assert proc.returncode == 0, proc.stderr


def test_remote_without_the_key_refuses_signed_commits(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    assert apt_ostree(http_sysroot.path, "remote", "add", "nokey", served.url).returncode == 0
    proc = apt_ostree(http_sysroot.path, "rebase", f"nokey:{OTHER_REF}")
    error = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert error == (
        f"error: commit {served.commits['other-1']} is not signed by a key trusted for"
        f' remote "nokey" (signed by unknown key {served.key.fingerprint[-16:]})'
    )
