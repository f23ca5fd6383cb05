"""rpm-ostree's flags that do real work, on offline sysroots: status -J and the
deployment keys of rpm-ostree, -C/--cache-only, --download-only, deploy --preview,
--disallow-downgrade, rebase --custom-origin-*, kargs --editor, db diff -c.

The remote is the GPG-signed HTTP fixture repo (tests.fixtures.httprepo), which
logs every request: a test can assert that -C fetched nothing."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.httprepo import HttpSysroot
from tests.fixtures.sysroot import REF, TOP, apt_ostree, deployments_json


def _status(sysroot: Path) -> dict[str, Any]:
    proc = apt_ostree(sysroot, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status: dict[str, Any] = json.loads(proc.stdout)
    return status


def test_status_json_has_rpm_ostree_commit_meta_signatures_and_leaves_out_what_does_not_apply(
    http_sysroot: HttpSysroot,
) -> None:
    [d] = _status(http_sysroot.path)["deployments"]
    assert d["base-commit-meta"]["version"] == "1"
    assert "apt-ostree.packages" not in d["base-commit-meta"]  # promoted, as rpm-ostree's
    # the v1 commit is signed by the remote's imported key
    assert d["gpg-enabled"] is True
    [signature] = d["signatures"]
    assert signature[0] is True  # valid
    for key in ("layered-commit-meta", "base-version", "pending-base-checksum", "custom-origin"):
        assert key not in d


def test_after_upgrade_check_status_shows_the_pending_base_and_cache_only_refuses_it(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    assert apt_ostree(http_sysroot.path, "upgrade", "--check").returncode == 0
    [d] = _status(http_sysroot.path)["deployments"]
    assert d["pending-base-checksum"] == served.commits["2"]
    assert d["pending-base-version"] == "2"
    assert isinstance(d["pending-base-timestamp"], int)
    # only the commit's metadata is here: -C cannot deploy it
    proc = apt_ostree(http_sysroot.path, "upgrade", "--cache-only")
    assert proc.returncode == 1
    assert "run again without -C/--cache-only" in proc.stderr
    assert [d["checksum"] for d in deployments_json(http_sysroot.path)] == [served.commits["1"]]


def test_status_jsonpath_prints_the_selected_values_global_options_after_the_command(
    http_sysroot: HttpSysroot,
) -> None:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "apt_ostree", "status", "-J", "$.deployments[*].version",
         "--sysroot", str(http_sysroot.path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["1"]


def test_download_only_fetches_the_update_and_cache_only_deploys_it_without_the_network(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    proc = apt_ostree(http_sysroot.path, "upgrade", "--download-only")
    assert proc.returncode == 0, proc.stderr
    assert "nothing deployed (--download-only)" in proc.stdout
    [d] = deployments_json(http_sysroot.path)
    assert d["checksum"] == served.commits["1"]
    requests = len(served.log.requests)
    proc = apt_ostree(http_sysroot.path, "upgrade", "-C")
    assert proc.returncode == 0, proc.stderr
    assert len(served.log.requests) == requests  # nothing fetched
    assert deployments_json(http_sysroot.path)[0]["checksum"] == served.commits["2"]


def test_deploy_preview_shows_the_package_changes_and_deploys_nothing(
    http_sysroot: HttpSysroot,
) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["3"])
    proc = apt_ostree(http_sysroot.path, "deploy", "--preview", "version=3")
    assert proc.returncode == 0, proc.stderr
    assert "pkg-b 1.0 -> 2.0" in proc.stdout and "pkg-c_1.0_amd64" in proc.stdout
    assert [d["checksum"] for d in deployments_json(http_sysroot.path)] == [served.commits["1"]]


def test_deploy_disallow_downgrade_refuses_an_older_commit(http_sysroot: HttpSysroot) -> None:
    served = http_sysroot.repo
    served.set_tip(served.commits["2"])
    assert apt_ostree(http_sysroot.path, "upgrade").returncode == 0
    proc = apt_ostree(http_sysroot.path, "deploy", "--disallow-downgrade", "version=1")
    assert proc.returncode == 1
    assert "is older than the deployed commit" in proc.stderr
    assert "--disallow-downgrade" in proc.stderr
    assert len(deployments_json(http_sysroot.path)) == 2
    # rpm-ostree's deploy allows a downgrade by default
    assert apt_ostree(http_sysroot.path, "deploy", "version=1").returncode == 0


def test_rebase_records_a_custom_origin_shown_by_status(http_sysroot: HttpSysroot) -> None:
    url, description = "https://images.example.org/debian", "Example images"
    custom = ["--custom-origin-url", url, "--custom-origin-description", description]
    proc = apt_ostree(http_sysroot.path, "rebase", "origin:test/x86_64/other", *custom)
    assert proc.returncode == 0, proc.stderr
    d = deployments_json(http_sysroot.path)[0]
    assert d["origin"] == "origin:test/x86_64/other"
    assert d["custom-origin"] == [url, description]
    text = apt_ostree(http_sysroot.path, "status").stdout
    assert f"CustomOrigin: {description} ({url})" in text
    # a rebase without them drops them, as rpm-ostree's
    assert apt_ostree(http_sysroot.path, "rebase", f"origin:{REF}").returncode == 0
    assert "custom-origin" not in deployments_json(http_sysroot.path)[0]


def test_rebase_custom_origin_url_needs_its_description(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", "origin:test/x86_64/other",
                      "--custom-origin-url", "https://x.example")  # fmt: skip
    assert proc.returncode == 1
    assert "must be given together" in proc.stderr
    assert len(deployments_json(http_sysroot.path)) == 1


def test_rebase_has_no_unchanged_exit_77_and_a_bad_flag_exits_1(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "rebase", "--unchanged-exit-77", "origin:x")
    assert proc.returncode == 1 and "unrecognized arguments" in proc.stderr


def test_kargs_editor_applies_what_the_editor_wrote(
    http_sysroot: HttpSysroot, tmp_path: Path
) -> None:
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\nsed -i "1s/quiet/splash console=ttyS0/" "$1"\n')
    editor.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"), EDITOR=str(editor), VISUAL="")
    run = [sys.executable, "-m", "apt_ostree", "--sysroot", str(http_sysroot.path), "kargs"]
    before = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    proc = subprocess.run([*run, "--editor"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    after = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout.split()
    assert "quiet" in before.split() and "quiet" not in after
    # new arguments after the kept ones (libostree writes its own ostree= last)
    assert [a for a in after if not a.startswith("ostree=")] == [
        "root=LABEL=root", "splash", "console=ttyS0"
    ]  # fmt: skip
    # an editor that changes nothing: no new deployment, 77 when asked
    editor.write_text("#!/bin/sh\ntrue\n")
    proc = subprocess.run([*run, "--editor", "--unchanged-exit-77"], capture_output=True,
                          text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == 77 and "unchanged" in proc.stdout
    assert len(deployments_json(http_sysroot.path)) == 2


def _changelog(entries: list[tuple[str, str]]) -> bytes:
    text = "".join(
        f"pkg-b ({v}) unstable; urgency=medium\n\n  * {line}\n\n"
        f" -- A Maintainer <a@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
        for v, line in entries
    )
    return gzip.compress(text.encode(), mtime=0)


def test_db_diff_changelogs_prints_the_new_entries_of_each_upgrade(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    commits = []
    for version, entries in (
        ("1.0-1", [("1.0-1", "First.")]),
        ("1.2-1", [("1.2-1", "Fix the frobnicator."), ("1.1-1", "Faster."),
                   ("1.0-1", "First.")]),
    ):  # fmt: skip
        tree = tmp_path / f"tree-{version}"
        docs = tree / "usr/share/doc/pkg-b"
        docs.mkdir(parents=True)
        (docs / "changelog.Debian.gz").write_bytes(_changelog(entries))
        # pkg-c's documentation is a link to pkg-b's, as Debian allows
        (tree / "usr/share/doc/pkg-c").symlink_to("pkg-b")
        meta = (
            f"apt-ostree.packages=[('pkg-b', '{version}', 'amd64'), ('pkg-c', '{version}', 'all')]"
        )
        commits.append(subprocess.run(
            ["ostree", "commit", f"--repo={repo}", "-b", "test", f"--tree=dir={tree}",
             f"--add-metadata={meta}"], capture_output=True, text=True, check=True,
        ).stdout.strip())  # fmt: skip
    proc = apt_ostree(None, "db", "diff", "-r", repo, "-c", *commits)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Changelog of pkg-b:" in out and "Changelog of pkg-c:" in out
    assert "Fix the frobnicator." in out and "Faster." in out
    assert "First." not in out  # the old version's own entry is not new


def test_register_driver_needs_the_booted_system(http_sysroot: HttpSysroot) -> None:
    proc = apt_ostree(http_sysroot.path, "deploy", "--register-driver", "Zincati")
    assert proc.returncode == 1
    assert "--register-driver needs the booted system" in proc.stderr
    assert _status(http_sysroot.path)["update-driver"] is None
