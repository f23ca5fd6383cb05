"""apt-ostree accepts rpm-ostree's command line, command by command and flag by flag.

RPM_OSTREE is rpm-ostree's own list (upstream src/app/libmain.cxx and the option
tables of src/app/rpmostree-builtin-*.cxx, rpmostree-pkg-builtins.cxx,
rpmostree-override-builtins.cxx, rpmostree-db-builtin-*.cxx, rust/src/builtins),
kept here as data. Every command and flag is either accepted by apt-ostree's
parser or listed in EXCEPTIONS with the reason; an exception that the parser
accepts fails too, so that the table never hides a flag that exists.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from apt_ostree.cli.main import ALIASES, build_parser, main, resolve_aliases
from apt_ostree.cli.options import subparsers

# command path -> rpm-ostree's options for it (short and long spellings).
RPM_OSTREE: dict[tuple[str, ...], list[str]] = {
    ("status",): [
        "-v",
        "--verbose",
        "-a",
        "--advisories",
        "--json",
        "-J",
        "--jsonpath",
        "-b",
        "--booted",
        "--pending-exit-77",
        "-p",
        "--pretty",
    ],
    ("upgrade",): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "--allow-downgrade",
        "--check-diff",
        "--preview",
        "--check",
        "-C",
        "--cache-only",
        "--download-only",
        "--upgrade-unchanged-exit-77",
        "--unchanged-exit-77",
        "--trigger-automatic-update-policy",
        "--lock-finalization",
        "--bypass-driver",
        "--install",
        "--uninstall",
    ],
    ("deploy",): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "--preview",
        "-C",
        "--cache-only",
        "--download-only",
        "--skip-branch-check",
        "--lock-finalization",
        "--disallow-downgrade",
        "--unchanged-exit-77",
        "--register-driver",
        "--bypass-driver",
        "--ex-cliwrap",
        "--install",
        "--uninstall",
    ],
    ("rebase",): [
        "--stateroot",
        "--os",
        "-b",
        "--branch",
        "-m",
        "--remote",
        "-r",
        "--reboot",
        "--skip-purge",
        "-C",
        "--cache-only",
        "--download-only",
        "--custom-origin-description",
        "--custom-origin-url",
        "--experimental",
        "--disallow-downgrade",
        "--lock-finalization",
        "--bypass-driver",
        "--install",
        "--uninstall",
    ],
    ("rollback",): ["-r", "--reboot"],
    ("kargs",): [
        "--stateroot",
        "--os",
        "--deploy-index",
        "--reboot",
        "--append",
        "--replace",
        "--delete",
        "--append-if-missing",
        "--delete-if-present",
        "--unchanged-exit-77",
        "--import-proc-cmdline",
        "--editor",
        "--lock-finalization",
    ],
    ("cleanup",): [
        "--stateroot",
        "--os",
        "-b",
        "--base",
        "-p",
        "--pending",
        "-r",
        "--rollback",
        "-m",
        "--repomd",
    ],
    ("reset",): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-l",
        "--overlays",
        "-o",
        "--overrides",
        "-i",
        "--initramfs",
        "--lock-finalization",
        "--install",
        "--uninstall",
    ],
    ("refresh-md",): ["--stateroot", "--os", "-f", "--force"],
    ("install",): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-n",
        "--dry-run",
        "-y",
        "--assumeyes",
        "--allow-inactive",
        "--idempotent",
        "--unchanged-exit-77",
        "--lock-finalization",
        "--enablerepo",
        "--disablerepo",
        "--releasever",
        "--uninstall",
        "-C",
        "--cache-only",
        "--download-only",
        "-A",
        "--apply-live",
        "--force-replacefiles",
    ],
    ("uninstall",): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-n",
        "--dry-run",
        "-y",
        "--assumeyes",
        "--allow-inactive",
        "--idempotent",
        "--unchanged-exit-77",
        "--lock-finalization",
        "--enablerepo",
        "--disablerepo",
        "--releasever",
        "--install",
        "--all",
    ],
    ("search",): [],
    ("override", "remove"): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-n",
        "--dry-run",
        "--lock-finalization",
        "-C",
        "--cache-only",
        "--replace",
        "--install",
        "--uninstall",
    ],
    ("override", "replace"): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-n",
        "--dry-run",
        "--lock-finalization",
        "-C",
        "--cache-only",
        "--remove",
        "--experimental",
        "--freeze",
        "--from",
        "--install",
        "--uninstall",
    ],
    ("override", "reset"): [
        "--stateroot",
        "--os",
        "-r",
        "--reboot",
        "-n",
        "--dry-run",
        "--lock-finalization",
        "-C",
        "--cache-only",
        "-a",
        "--all",
        "--install",
        "--uninstall",
    ],
    ("db", "diff"): [
        "-r",
        "--repo",
        "-F",
        "--format",
        "-c",
        "--changelogs",
        "--sysroot",
        "--base",
        "-a",
        "--advisories",
    ],
    ("db", "list"): ["-r", "--repo", "-a", "--advisories"],
    ("db", "version"): ["-r", "--repo"],
    ("cancel",): [],
    ("reload",): [],
    ("initramfs",): [
        "--stateroot",
        "--os",
        "--enable",
        "--arg",
        "--disable",
        "-r",
        "--reboot",
        "--lock-finalization",
    ],
    ("initramfs-etc",): [
        "--stateroot",
        "--os",
        "--force-sync",
        "--track",
        "--untrack",
        "--untrack-all",
        "-r",
        "--reboot",
        "--lock-finalization",
        "--unchanged-exit-77",
    ],
    ("apply-live",): ["--target", "--reset", "--allow-replacement"],
    ("usroverlay",): ["--hotfix", "--transient"],
    ("finalize-deployment",): [
        "--stateroot",
        "--os",
        "--allow-missing-checksum",
        "--allow-unlocked",
    ],
    ("ex", "history"): ["-v", "--verbose", "--json", "-n", "--limit", "--all"],
    ("compose", "tree"): [
        "-r",
        "--repo",
        "--cachedir",
        "--workdir",
        "--dry-run",
        "--print-only",
        "--force-nocache",
        "--add-metadata-string",
        "--write-commitid-to",
        "--touch-if-changed",
    ],
}
# rpm-ostree's options of every command: (global_entries, and daemon_entries of commands
# that talk to the daemon).
GLOBAL = ["--version", "-q", "--quiet", "--sysroot"]

# A value for each option that takes one.
VALUES = {
    "--stateroot": "debian",
    "--os": "debian",
    "--jsonpath": "$.deployments",
    "-J": "$",
    "-b": "debian/12/x86_64",
    "--branch": "debian/12/x86_64",
    "-m": "origin",
    "--remote": "origin",
    "--custom-origin-description": "Debian",
    "--register-driver": "Zincati",
    "--custom-origin-url": "https://example.org/debian",
    "--ex-cliwrap": "true",
    "--install": "hello",
    "--uninstall": "hello",
    "--deploy-index": "0",
    "--append": "quiet",
    "--replace": "quiet",
    "--delete": "quiet",
    "--append-if-missing": "quiet",
    "--delete-if-present": "quiet",
    "--enablerepo": "x",
    "--disablerepo": "x",
    "--releasever": "12",
    "--remove": "hello",
    "--from": "repo=x",
    "-r": "/srv/repo",
    "--repo": "/srv/repo",
    "-F": "json",
    "--format": "json",
    "--sysroot": "/sysroot",
    "--arg": "-I /etc/x",
    "--track": "/etc/x.conf",
    "--untrack": "/etc/x.conf",
    "--target": "abc",
    "-n": "3",
    "--limit": "3",
    "--cachedir": "/c",
    "--workdir": "/w",
    "--add-metadata-string": "version=1",
    "--write-commitid-to": "/f",
    "--touch-if-changed": "/f",
}
# Options whose letter means something else in some commands.
NO_VALUE = {
    ("rebase",): {"-r"},
    ("cleanup",): {"-b", "-r", "-m"},
    ("reset",): {"-r"},
    ("install",): {"-r", "-n"},
    ("uninstall",): {"-r", "-n"},
    ("override", "remove"): {"-r", "-n"},
    ("override", "replace"): {"-n"},
    ("override", "reset"): {"-r", "-n"},
    ("status",): {"-b"},
    ("upgrade",): {"-r"},
    ("deploy",): {"-r"},
    ("initramfs",): {"-r"},
    ("initramfs-etc",): {"-r"},
    ("rollback",): {"-r"},
    ("ex", "history"): set(),
}
# Arguments a command needs besides the option under test.
POSITIONALS = {
    ("deploy",): ["version=12.1"],
    ("rebase",): ["origin:debian/13/x86_64"],
    ("install",): ["hello"],
    ("uninstall",): ["hello"],
    ("search",): ["hello"],
    ("override", "remove"): ["hello"],
    ("override", "replace"): ["hello"],
    ("override", "reset"): ["hello"],
    ("compose", "tree"): ["--repo=/srv/repo", "treefile.yaml"],
    ("finalize-deployment",): ["0" * 64],
}
# (command path, option) -> why apt-ostree does not accept it; option None: the command.
EXCEPTIONS: dict[tuple[tuple[str, ...], str | None], str] = {
    (("status",), "-a"): "advisories are RPM updateinfo; Debian archives publish none",
    (("status",), "--advisories"): "advisories are RPM updateinfo; Debian has none",
    (("db", "diff"), "-a"): "advisories are RPM updateinfo; Debian has none",
    (("db", "diff"), "--advisories"): "advisories are RPM updateinfo; Debian has none",
    (("db", "list"), "-a"): "advisories are RPM updateinfo; Debian has none",
    (("db", "list"), "--advisories"): "advisories are RPM updateinfo; Debian has none",
    (("upgrade",), "--check-diff"): "hidden, deprecated in rpm-ostree for --preview",
    (("deploy",), "--ex-cliwrap"): "rpm-ostree's wrapping of rpm/dnf/grubby binaries in the tree;"
    " apt-ostree does not wrap dpkg/apt",
    (("rebase",), "--experimental"): "rpm-ostree's gate for container/OCI rebases (OCI work)",
    (("override", "replace"), "--experimental"): "rpm-ostree's gate for --from/--freeze",
    (("override", "replace"), "--freeze"): "NAME=VERSION pins the version instead (docs/cli.md)",
    (("override", "replace"), "--from"): "APT sources have no names to pick one by: NAME takes"
    " the version apt chooses from all of them, pins included (docs/layering.md)",
    **{
        ((c,), o): "dnf repository options; APT sources are chosen by apt's own configuration"
        for c in ("install", "uninstall")
        for o in ("--enablerepo", "--disablerepo", "--releasever")
    },
    (("install",), "--force-replacefiles"): "dpkg refuses a file conflict unless the package"
    " declares Replaces:; no forcing of it",
    **{
        (c, o): "override takes no --install/--uninstall in apt-ostree: the layered packages are"
        " changed with install/uninstall (whose --uninstall/--install mix both)"
        for c in (("override", "remove"), ("override", "replace"), ("override", "reset"))
        for o in ("--install", "--uninstall")
    },
    (("reset",), "--install"): "rpm-ostree's reset takes package modifiers through the common"
    " pkg options table; apt-ostree's reset only resets",
    (("reset",), "--uninstall"): "as --install: reset only resets",
    (("compose", "tree"), "-r"): "-r is --repo in rpm-ostree's compose tree; apt-ostree's"
    " compose tree spells --repo only (treefile-based compose is apt-ostree's own)",
}


def _argv(path: tuple[str, ...], option: str) -> list[str]:
    argv = [*path, option]
    if option in VALUES and option not in NO_VALUE.get(path, set()):
        argv.append(VALUES[option])
    return argv + POSITIONALS.get(path, [])


def _parses(argv: list[str]) -> bool:
    argv = resolve_aliases(argv)
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit:
            return False
    return True


CASES = [(path, option) for path, options in RPM_OSTREE.items() for option in options]


@pytest.mark.parametrize(("path", "option"), CASES, ids=[" ".join((*p, o)) for p, o in CASES])
def test_rpm_ostree_option_is_accepted_or_a_listed_exception(
    path: tuple[str, ...], option: str
) -> None:
    argv = _argv(path, option)
    reason = EXCEPTIONS.get((path, option)) or EXCEPTIONS.get((path, None))
    if reason is None:
        assert _parses(argv), f"apt-ostree {' '.join(argv)} is refused"
    else:
        assert not _parses(argv), f"{' '.join(argv)} is accepted: drop its exception ({reason})"


@pytest.mark.parametrize("path", list(RPM_OSTREE), ids=[" ".join(p) for p in RPM_OSTREE])
def test_global_options_work_before_and_after_every_command(path: tuple[str, ...]) -> None:
    if (path, None) in EXCEPTIONS:
        pytest.skip(EXCEPTIONS[(path, None)])
    rest = [*path, *POSITIONALS.get(path, [])]
    before = build_parser(["-q", "--sysroot", "/s", *rest]).parse_args(
        ["-q", "--sysroot", "/s", *rest]
    )
    after = build_parser(rest).parse_args([*rest, "-q", "--sysroot", "/s"])
    plain = build_parser(rest).parse_args(rest)
    assert (before.quiet, str(before.sysroot)) == (True, "/s")
    assert (after.quiet, str(after.sysroot)) == (True, "/s")
    assert (plain.quiet, plain.sysroot) == (False, None)


def test_version_after_a_command_prints_the_version() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["status", "--version"])
    assert code == 0
    assert out.getvalue().startswith("apt-ostree ")


@pytest.mark.parametrize(("alias", "command"), sorted(ALIASES.items()))
def test_hidden_alias_runs_its_command_and_is_not_listed(alias: str, command: str) -> None:
    argv = resolve_aliases(["--sysroot", "/s", alias, "hello"])
    assert argv[2] == command
    assert alias not in dict(subparsers(build_parser()))


def test_unlock_is_usroverlay_with_its_options() -> None:
    args = build_parser(["unlock", "--hotfix"]).parse_args(resolve_aliases(["unlock", "--hotfix"]))
    assert (args.command, args.hotfix, args.transient) == ("usroverlay", True, False)
    assert not _parses(["usroverlay", "--hotfix", "--transient"])  # as ostree: one mode


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["status", "--no-such-flag"], [], ["kargs", "--deploy-index", "x"]],
)
def test_a_bad_command_line_exits_1_as_rpm_ostree(argv: list[str]) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(argv) == 1
    assert "error:" in err.getvalue()


@pytest.mark.parametrize(
    "path",
    [
        ("rebase",),
        ("reset",),
        ("override", "remove"),
        ("override", "replace"),
        ("override", "reset"),
    ],
)
def test_no_unchanged_exit_77_where_rpm_ostree_has_none(path: tuple[str, ...]) -> None:
    assert not _parses(_argv(path, "--unchanged-exit-77"))


def test_every_exception_names_an_rpm_ostree_option() -> None:
    for (path, option), reason in EXCEPTIONS.items():
        assert path in RPM_OSTREE and reason
        assert option is None or option in RPM_OSTREE[path]


def test_stateroot_and_os_set_the_same_option() -> None:
    for path, options in RPM_OSTREE.items():
        if "--stateroot" not in options or (path, None) in EXCEPTIONS:
            continue
        a = build_parser([*path]).parse_args(_argv(path, "--stateroot"))
        b = build_parser([*path]).parse_args(_argv(path, "--os"))
        assert a.osname == b.osname == "debian", path


def test_the_parser_is_an_argparse_parser() -> None:
    assert isinstance(build_parser(), argparse.ArgumentParser)
