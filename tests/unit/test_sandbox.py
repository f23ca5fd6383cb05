"""The one sandbox entry point (apt_ostree.sandbox), on a tiny tree: dash, perl and
their libraries copied from the host.

Every run has an explicit capability list that may hold none of the forbidden
ones, a new session, stdin from /dev/null, death with its parent and the seccomp
filter; inside, the process holds the capabilities it was given and nothing more,
and a mount fails with EPERM.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from apt_ostree.debian.dpkg import DPKG_CAPS
from apt_ostree.errors import CommandError
from apt_ostree.layout import DRACUT_CAPS
from apt_ostree.sandbox import (
    FORBIDDEN_CAPS,
    SandboxError,
    bwrap_argv,
    check_caps,
    run_in_tree,
)
from tests.fixtures.trees import make_tree

# capability(7) numbers, for reading CapEff.
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_NET_ADMIN": 12,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}  # fmt: skip
# Prints the status lines of the process that runs it (a child of the sandbox's shell).
STATUS = "while read -r l; do case $l in Cap*|NoNewPrivs*|Seccomp*) echo $l;; esac; done"


def _copy_program(root: Path, program: str) -> None:
    """`program` and the libraries that ldd names, at the paths that it names."""
    ldd = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    for path in [program, *re.findall(r"(/\S+) \(0x", ldd)]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(os.path.realpath(path), dest)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tree(tmp_path_factory.mktemp("sandbox") / "root", dracut=False)
    _copy_program(root, "/usr/bin/perl")
    return root


def perl(tree: Path, code: str, caps: tuple[str, ...] = DPKG_CAPS) -> str:
    # Without a locale in the tree perl would warn; C is all it needs.
    return run_in_tree(tree, ["/usr/bin/perl", "-e", code], what="perl", caps=caps,
                       env={"LC_ALL": "C"})  # fmt: skip


def cap_eff(tree: Path, caps: tuple[str, ...]) -> set[str]:
    """The capabilities of a program that the sandboxed shell starts."""
    out = run_in_tree(tree, ["/bin/sh", "-c", f"/bin/sh -c '{STATUS}' < /proc/self/status"],
                      what="status", caps=caps)  # fmt: skip
    fields = dict(line.split(":", 1) for line in out.splitlines())
    mask = int(fields["CapEff"], 16)
    assert int(fields["CapPrm"], 16) == mask and fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a filter is on
    return {name for name, bit in CAP_NUMBERS.items() if mask & (1 << bit)}


@pytest.mark.parametrize("cap", sorted(FORBIDDEN_CAPS))
def test_a_forbidden_capability_is_refused_as_a_bug(tree: Path, cap: str) -> None:
    with pytest.raises(ValueError, match=cap):
        run_in_tree(tree, ["/bin/true"], what="x", caps=["CAP_CHOWN", cap])


def test_a_capability_list_is_a_list_of_names() -> None:
    with pytest.raises(ValueError):
        check_caps("CAP_CHOWN")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ALL"):
        check_caps(["ALL"])


def test_every_use_keeps_none_of_the_forbidden_capabilities() -> None:
    for caps in (DPKG_CAPS, DRACUT_CAPS):
        assert check_caps(caps) == caps


def test_bwrap_always_gets_a_new_session_death_with_its_parent_and_the_filter() -> None:
    argv = bwrap_argv(Path("/tree"), ["true"], caps=(), seccomp_fd=7)
    cut = argv.index("--")
    for flag in ("--new-session", "--die-with-parent", "--unshare-net", "--unshare-pid",
                 "--unshare-ipc", "--unshare-uts", "--clearenv"):  # fmt: skip
        assert flag in argv[:cut]
    assert argv[argv.index("--seccomp") + 1] == "7"
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and "--cap-add" not in argv


def test_inside_a_program_holds_exactly_the_capabilities_it_was_given(tree: Path) -> None:
    assert cap_eff(tree, DPKG_CAPS) == set(DPKG_CAPS)
    assert cap_eff(tree, DRACUT_CAPS) == set(DRACUT_CAPS)
    assert cap_eff(tree, ()) == set()


def test_stdin_is_dev_null_and_no_terminal_is_reachable(tree: Path) -> None:
    out = perl(tree, 'print -t STDIN ? "tty" : "no-tty", " ", (open(my $t, "<", "/dev/tty") '
                     '? "ctty" : 0 + $!), " ", (stat STDIN)[6]')  # fmt: skip
    # /dev/null is the character device 1:3.
    assert out.split() == ["no-tty", str(errno.ENXIO), str(os.makedev(1, 3))]


@pytest.mark.parametrize(
    ("what", "code"),
    [
        ("mount", 'syscall(165, my $s = "none", my $t = "/tmp", my $f = "tmpfs", 0, 0)'),
        ("umount2", 'syscall(166, my $t = "/proc", 2)'),
        ("open_by_handle_at", 'syscall(304, -100, my $h = pack("IiII", 8, 1, 2, 0), 0)'),
        # PTRACE_SEIZE: were it let through, the parent would not be stopped.
        ("ptrace", "syscall(101, 0x4206, getppid(), 0, 0)"),
        ("unshare", "syscall(272, 0x10000000)"),  # CLONE_NEWUSER
        ("clone a namespace", "syscall(56, 0x10000000 | 17, 0, 0, 0, 0)"),
        ("bpf", "syscall(321, 0, 0, 0)"),
        ("kexec_load", "syscall(246, 0, 0, 0, 0)"),
        ("finit_module", 'syscall(313, 0, my $p = "", 0)'),
        ("keyctl", "syscall(250, 0, 0, 0, 0, 0)"),
        ("TIOCSTI", 'syscall(16, 0, 0x5412, my $c = "x")'),
        ("TIOCSTI (high bits set)", 'syscall(16, 0, 0x100005412, my $c = "x")'),
        ("TIOCLINUX", 'syscall(16, 0, 0x541C, my $c = "x")'),
    ],
)
def test_the_filter_refuses_with_eperm(tree: Path, what: str, code: str) -> None:
    assert perl(tree, f"$! = 0; {code}; print 0 + $!") == str(errno.EPERM), what


def test_the_filter_lets_ordinary_work_through(tree: Path) -> None:
    out = perl(tree, 'my $pid = fork(); exit 7 if $pid == 0; waitpid($pid, 0); print $? >> 8, " ";'
                     ' syscall(16, 0, 0x5401, my $b = "\\0" x 64); print 0 + $!')  # fmt: skip
    # fork works; TCGETS on /dev/null is an ordinary ENOTTY, not EPERM.
    assert out.split() == ["7", str(errno.ENOTTY)]


def test_another_abi_kills_the_process(tree: Path) -> None:
    # x32's getpid: the x86-64 table with bit 30 set, which the filter does not cover.
    with pytest.raises(CommandError, match="exit status 159"):  # 128 + SIGSYS
        perl(tree, "syscall(0x40000000 + 39)")


def test_a_symlink_where_the_sandbox_mounts_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", dracut=False)
    var = tmp_path / "var"
    (var / "lib").mkdir(parents=True)
    # bwrap would make /var/lib/dpkg through this link, on the host.
    (var / "lib/dpkg").symlink_to("/etc")
    with pytest.raises(SandboxError, match="symbolic link"):
        run_in_tree(root, ["/bin/true"], what="x", caps=(),
                    binds=[(var, "/var"), (var / "lib", "/var/lib/dpkg")])  # fmt: skip
    (root / "tmp").rmdir()
    (root / "tmp").symlink_to("../../../../etc")
    with pytest.raises(SandboxError, match="not inside the tree"):
        run_in_tree(root, ["/bin/true"], what="x", caps=())


def test_a_tmp_that_links_into_the_tree_gets_the_tmpfs_at_its_target(tmp_path: Path) -> None:
    """The OSTree layout's /tmp -> sysroot/tmp: bubblewrap 0.11 (Debian 13) refuses to
    mount on a symlink, so the tmpfs (and what is bound below /tmp) goes on the target."""
    root = make_tree(tmp_path / "root", dracut=False)
    (root / "tmp").rmdir()
    (root / "tmp").symlink_to("sysroot/tmp")
    script = tmp_path / "script"
    script.write_text("echo scratch > /tmp/file; test -e /sysroot/tmp/file && echo ok\n")
    out = run_in_tree(root, ["/bin/sh", "/tmp/bound/script"], what="x", caps=(),
                      ro_binds=[(script, "/tmp/bound/script")])  # fmt: skip
    assert out.strip() == "ok"
    assert (root / "sysroot/tmp").is_dir() and not (root / "sysroot/tmp/file").exists()
    argv = bwrap_argv(root, ["true"], caps=(), seccomp_fd=7, ro_binds=[(script, "/tmp/x")],
                      tmp="/sysroot/tmp")  # fmt: skip
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert mounts == ["/sysroot/tmp", "/run"]
    assert argv[argv.index("--ro-bind") + 2] == "/sysroot/tmp/x"
