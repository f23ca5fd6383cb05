"""`apt-ostree kargs` on offline sysroots: show, and change by a new deployment."""

from __future__ import annotations

import time

import pytest

from apt_ostree.system.sysroot import Sysroot
from tests.fixtures.deployments import deploy_version, entry_options, fsck, sysroot_state
from tests.fixtures.sysroot import REF, SysrootFixture, apt_ostree, deployments_json


def _without_ostree(options: str) -> str:
    return " ".join(a for a in options.split(" ") if not a.startswith("ostree="))


def test_kargs_prints_the_default_deployments_arguments(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "kargs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("root=LABEL=root quiet ostree=/ostree/boot.")
    assert proc.stdout == entry_options(sysroot.path)[0] + "\n"


def test_kargs_append_deploys_the_same_commit_again_with_the_argument(
    sysroot: SysrootFixture,
) -> None:
    proc = apt_ostree(sysroot.path, "kargs", "--append", "console=ttyS0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Kernel arguments updated.\n"
    new, old = deployments_json(sysroot.path)
    assert new["checksum"] == old["checksum"] == sysroot.repo.commits["1"]
    assert new["origin"] == old["origin"] == f"origin:{REF}"
    options = entry_options(sysroot.path)
    assert _without_ostree(options[0]) == "root=LABEL=root quiet console=ttyS0"
    assert _without_ostree(options[1]) == "root=LABEL=root quiet"
    fsck(sysroot.path)


def test_kargs_append_keeps_repeated_keys_in_order(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "kargs", "--append", "console=tty0", "--append=console=ttyS0")
    assert proc.returncode == 0, proc.stderr
    assert _without_ostree(entry_options(sysroot.path)[0]) == (
        "root=LABEL=root quiet console=tty0 console=ttyS0"
    )


def test_kargs_value_with_spaces_stays_one_quoted_argument(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "kargs", "--append", 'dyndbg="file x.c +p"')
    assert proc.returncode == 0, proc.stderr
    assert 'quiet dyndbg="file x.c +p" ostree=' in entry_options(sysroot.path)[0]
    proc = apt_ostree(sysroot.path, "kargs", "--delete", 'dyndbg="file x.c +p"')
    assert proc.returncode == 0, proc.stderr
    assert "dyndbg" not in entry_options(sysroot.path)[0]


def test_kargs_one_option_may_carry_several_arguments(sysroot: SysrootFixture) -> None:
    proc = apt_ostree(sysroot.path, "kargs", "--append", "init_on_alloc=1 init_on_free=1")
    assert proc.returncode == 0, proc.stderr
    assert "quiet init_on_alloc=1 init_on_free=1 ostree=" in entry_options(sysroot.path)[0]


def test_kargs_delete_and_replace(sysroot: SysrootFixture) -> None:
    deploy_version(sysroot, "2", kargs=["loglevel=3", "quiet", "console=tty0", "console=ttyS0"])
    proc = apt_ostree(
        sysroot.path, "kargs", "--delete", "quiet", "--replace", "console=ttyS0=ttyS1",
        "--replace", "loglevel=7",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _without_ostree(entry_options(sysroot.path)[0]) == (
        "loglevel=7 console=tty0 console=ttyS1"
    )
    assert deployments_json(sysroot.path)[0]["checksum"] == sysroot.repo.commits["2"]


def test_kargs_delete_of_a_missing_argument_is_an_error_and_changes_nothing(
    sysroot: SysrootFixture,
) -> None:
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "kargs", "--append", "a=1", "--delete", "foo")
    assert proc.returncode == 1
    assert proc.stderr == 'error: no karg "foo" to delete\n'
    assert sysroot_state(sysroot.path) == before


def test_kargs_delete_of_a_key_with_several_values_needs_the_value(
    sysroot: SysrootFixture,
) -> None:
    deploy_version(sysroot, "2", kargs=["console=tty0", "console=ttyS0"])
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "kargs", "--delete", "console")
    assert proc.returncode == 1
    assert proc.stderr == (
        'error: karg "console" has several values (console=tty0 console=ttyS0);'
        " give KEY=VALUE to delete one\n"
    )
    assert sysroot_state(sysroot.path) == before
    assert apt_ostree(sysroot.path, "kargs", "--delete", "console=tty0").returncode == 0
    assert _without_ostree(entry_options(sysroot.path)[0]) == "console=ttyS0"


def test_kargs_change_that_changes_nothing_exits_77_when_asked(sysroot: SysrootFixture) -> None:
    before = sysroot_state(sysroot.path)
    for args in (["--delete-if-present", "foo"], ["--append-if-missing", "quiet"]):
        proc = apt_ostree(sysroot.path, "kargs", *args, "--unchanged-exit-77")
        assert proc.returncode == 77, proc.stderr
        assert proc.stdout == "Kernel arguments unchanged\n"
        proc = apt_ostree(sysroot.path, "kargs", *args)
        assert proc.returncode == 0, proc.stderr
    assert sysroot_state(sysroot.path) == before


def test_kargs_deploy_index_shows_and_changes_that_deployment(sysroot: SysrootFixture) -> None:
    deploy_version(sysroot, "2", kargs=["root=LABEL=root", "v2"])
    proc = apt_ostree(sysroot.path, "kargs", "--deploy-index", "1")
    assert proc.returncode == 0, proc.stderr
    assert _without_ostree(proc.stdout.strip()) == "root=LABEL=root quiet"
    proc = apt_ostree(sysroot.path, "kargs", "--deploy-index", "1", "--append", "x=1")
    assert proc.returncode == 0, proc.stderr
    new = deployments_json(sysroot.path)[0]
    assert new["checksum"] == sysroot.repo.commits["1"]
    assert _without_ostree(entry_options(sysroot.path)[0]) == "root=LABEL=root quiet x=1"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--deploy-index", "2"], "invalid --deploy-index 2: the sysroot has 1 deployment(s),"
         " indexes 0 to 0"),
        (["--deploy-index", "-1", "--append", "a"], "invalid --deploy-index -1: the sysroot"
         " has 1 deployment(s), indexes 0 to 0"),
        (["--import-proc-cmdline"], "--import-proc-cmdline needs the booted system;"
         " {path} is an offline sysroot"),
        (["--append", "a", "--reboot"], "--reboot needs the booted system;"
         " {path} is an offline sysroot"),
        (["--append", 'a="b'], 'unbalanced double quote in kernel arguments: a="b'),
        (["--append", "=b"], 'invalid --append "=b": it has no key'),
        (["--delete", "ostree"], '--delete "ostree": the "ostree" karg is written by ostree'
         " on every deployment and cannot be changed"),
        (["--replace", "quiet=1=2"], 'no karg "quiet=1" to replace'),
        (["--replace", "nope=1"], 'no karg "nope" to replace'),
    ],
)  # fmt: skip
def test_kargs_bad_input_is_a_one_line_error_and_changes_nothing(
    sysroot: SysrootFixture, args: list[str], error: str
) -> None:
    before = sysroot_state(sysroot.path)
    proc = apt_ostree(sysroot.path, "kargs", *args)
    assert proc.returncode == 1
    assert proc.stderr == f"error: {error.format(path=sysroot.path)}\n"
    assert sysroot_state(sysroot.path) == before


def test_kargs_fails_at_once_while_another_operation_holds_the_lock(
    sysroot: SysrootFixture,
) -> None:
    before = sysroot_state(sysroot.path)
    with Sysroot(sysroot.path).locked("apt-ostree upgrade"):
        proc = apt_ostree(sysroot.path, "kargs", "--append", "a=1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: another operation is in progress (pid ")
    assert sysroot_state(sysroot.path) == before


def test_kargs_change_time(sysroot: SysrootFixture) -> None:
    start = time.monotonic()
    proc = apt_ostree(sysroot.path, "kargs", "--append", "a=1")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    print(f"kargs change: {elapsed:.3f} s wall (CLI, offline, tmpfs)")
    assert elapsed < 2.0
