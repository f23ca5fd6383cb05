"""The one way apt-ostree runs a program inside a tree: bubblewrap with the tree
as /, no network, private pid/ipc/uts/cgroup namespaces, fresh /proc, /dev, /tmp
and /run, a new session with stdin from /dev/null, only the capabilities that
the caller names, and a seccomp filter that refuses the system calls that reach
past the tree (docs/security.md, "The sandbox").

Every sandboxed run goes through `run_in_tree`; nothing else calls bwrap.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import seccomp

from apt_ostree.errors import AptOstreeError, CommandError

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(AptOstreeError):
    """The tree cannot be used as a sandbox's root (a package made it unsafe)."""


# No use may keep these: each reaches past the tree (the host's filesystems,
# kernel, processes or network) whatever the mounts say.
FORBIDDEN_CAPS = frozenset({
    "CAP_SYS_ADMIN",  # mounts, namespaces, and most of the kernel's admin interfaces
    "CAP_SYS_MODULE",  # code in the host's kernel
    "CAP_SYS_PTRACE",  # other processes' memory
    "CAP_DAC_READ_SEARCH",  # open_by_handle_at: any file of a bound filesystem by its handle
    "CAP_NET_ADMIN",
    "CAP_SYS_RAWIO",  # ioperm/iopl, raw block and memory devices
    "CAP_SYS_BOOT",  # reboot, kexec_load
    "CAP_MKNOD",  # device nodes: the host's disks, should a mount ever lack nodev
    "CAP_SYS_TIME",
    "CAP_SYSLOG",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_AUDIT_CONTROL",
})  # fmt: skip

# Refused with EPERM whatever the capabilities: the filesystem-handle escape,
# mounts, the kernel's module/kexec/bpf/keyring interfaces, other processes'
# memory, and namespaces (bwrap has made its own before the filter applies).
REFUSED_SYSCALLS = (
    "open_by_handle_at", "name_to_handle_at",
    "mount", "umount", "umount2", "pivot_root", "chroot",
    "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "keyctl", "add_key", "request_key",
    "unshare", "setns", "reboot", "swapon", "swapoff", "acct", "quotactl",
    "iopl", "ioperm",
)  # fmt: skip
# ioctl requests refused on any file descriptor: pushing input into a terminal
# (TIOCSTI) and the console's selection/paste (TIOCLINUX).
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
# clone() flags that make a namespace (unshare(2) by another door).
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


# The 32-bit ABI that each host architecture also runs.
COMPAT_ARCHES = {"x86_64": (seccomp.Arch.X86,), "aarch64": (seccomp.Arch.ARM,)}


def check_caps(caps: Sequence[str]) -> tuple[str, ...]:
    """`caps`, refused (a bug, not a user error) when one of them is forbidden."""
    if isinstance(caps, str):
        raise ValueError(f"capabilities must be a list of names, not the string {caps!r}")
    bad = sorted(set(caps) & FORBIDDEN_CAPS | {c for c in caps if not c.startswith("CAP_")})
    if bad:
        raise ValueError(f"the sandbox refuses these capabilities: {', '.join(bad)}")
    return tuple(caps)


def syscall_filter() -> seccomp.SyscallFilter:
    """Allow everything but REFUSED_SYSCALLS, TIOCSTI/TIOCLINUX and namespaces.

    The rules cover x86-64 and 32-bit x86 (i386 multiarch programs run in maintainer
    scripts): a filter for one syscall table is bypassed through the other. Any other
    ABI, x32 included, kills the process.
    """
    deny = seccomp.ERRNO(errno.EPERM)
    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    for arch in COMPAT_ARCHES.get(os.uname().machine, ()):
        flt.add_arch(arch)
    for name in REFUSED_SYSCALLS:
        flt.add_rule(deny, name)
    for request in (TIOCSTI, TIOCLINUX):
        # The request is an int: only its low 32 bits count for the kernel.
        flt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    for flag in CLONE_NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3's flags are behind a pointer that seccomp cannot read: ENOSYS makes
    # glibc fall back to clone(), whose flags the rules above check.
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return flt


@functools.cache
def seccomp_program() -> bytes:
    """The filter as the BPF program that bwrap loads (built once per process)."""
    fd = os.memfd_create("apt-ostree-seccomp")
    with os.fdopen(fd, "w+b") as f:
        syscall_filter().export_bpf(f)
        f.seek(0)
        return f.read()


def _program_fd() -> int:
    """A file descriptor at the start of the BPF program, for `bwrap --seccomp`."""
    fd = os.memfd_create("apt-ostree-seccomp")
    try:
        os.write(fd, seccomp_program())
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def bwrap_argv(
    root: Path,
    argv: Sequence[str],
    *,
    caps: Sequence[str],
    seccomp_fd: int,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    ro_binds: Sequence[tuple[Path, str]] = (),
    tmp: str = "/tmp",
) -> list[str]:
    """`tmp`: where the fresh /tmp is mounted (`_tmp_mount`); binds below /tmp go there."""
    binds = [(src, _in_tmp(dest, tmp)) for src, dest in binds]
    ro_binds = [(src, _in_tmp(dest, tmp)) for src, dest in ro_binds]
    cmd = [
        "bwrap",
        "--bind", os.fspath(root), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", tmp,
        "--tmpfs", "/run",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
        "--unshare-cgroup-try",
        # No controlling terminal: nothing inside can push input into the caller's.
        "--new-session",
        "--die-with-parent",
        "--seccomp", str(seccomp_fd),
        "--chdir", "/",
        "--clearenv",
        "--setenv", "PATH", SANDBOX_PATH,
        "--setenv", "HOME", "/root",
        "--setenv", "LC_ALL", "C.UTF-8",
        "--setenv", "DEBIAN_FRONTEND", "noninteractive",
        # Root's power is dropped but for what this use names.
        "--cap-drop", "ALL",
    ]  # fmt: skip
    for cap in check_caps(caps):
        cmd += ["--cap-add", cap]
    for src, dest in binds:
        cmd += ["--bind", os.fspath(src), dest]
    for src, dest in ro_binds:
        cmd += ["--ro-bind", os.fspath(src), dest]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, value]
    cmd += ["--", *argv]
    return cmd


def _no_link_below(base: Path, rel: PurePosixPath, shown: str) -> None:
    """Refuse a symlink on `base`/`rel` (missing components are fine: bwrap makes
    directories there). bwrap resolves mount paths on the host, where a link that a
    package planted in the tree points anywhere."""
    path = base
    for part in rel.parts:
        path = path / part
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return  # bwrap makes the directory, or fails on the file
        if stat.S_ISLNK(st.st_mode):
            raise SandboxError(
                f"{shown} is a symbolic link (to {os.readlink(path)}) where the sandbox mounts;"
                " a package put it there: refusing to run anything in this tree"
            )


def _check_mount_paths(
    root: Path,
    binds: Sequence[tuple[Path, str]],
    ro_binds: Sequence[tuple[Path, str]],
    tmp: str = "/tmp",
) -> None:
    """Every bind source in the tree, and every mount point, without a symlink on it."""
    # Mount point -> the host directory it shows (None: a fresh tmpfs), in bwrap's order.
    mounts: dict[str, Path | None] = {"/": root, "/proc": None, "/dev": None,
                                      tmp: None, "/run": None}  # fmt: skip
    for src, dest in [*binds, *ro_binds]:
        if src.is_relative_to(root):
            _no_link_below(root, PurePosixPath(src.relative_to(root)), str(src))
        under = max((m for m in mounts if dest == m or dest.startswith(m.rstrip("/") + "/")),
                    key=len)  # fmt: skip
        base = mounts[under]
        if base is not None:
            rel = PurePosixPath(dest).relative_to(under)
            _no_link_below(base, rel, dest if base == root else f"{dest} ({base}/{rel})")
        mounts[dest] = src


def _tmp_mount(root: Path) -> str:
    """Where the sandbox's fresh /tmp is mounted: /tmp, or, where /tmp is a symlink
    (the OSTree layout: /tmp -> sysroot/tmp), the link's target in the tree, which
    must exist there. Older bubblewrap (Debian 12's 0.8) mounted through the link;
    newer (Debian 13's 0.11) refuses to mount on a symlink."""
    tmp = root / "tmp"
    if not tmp.is_symlink():
        return "/tmp"
    target = PurePosixPath(os.readlink(tmp))
    if target.is_absolute() or ".." in target.parts:
        raise SandboxError(f"/tmp is a symbolic link to {target}, not inside the tree")
    _no_link_below(root, target, f"/{target}")
    (root / target).mkdir(parents=True, exist_ok=True)
    return f"/{target}"


def _in_tmp(dest: str, tmp: str) -> str:
    """A mount point below /tmp, below where /tmp really is."""
    if dest == "/tmp" or dest.startswith("/tmp/"):
        return tmp + dest[len("/tmp") :]
    return dest


def run_in_tree(
    root: Path,
    argv: Sequence[str],
    *,
    what: str,
    caps: Sequence[str],
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    ro_binds: Sequence[tuple[Path, str]] = (),
) -> str:
    """Run `argv` with `root` as / and only `caps`; return its output (stdout and
    stderr), raise CommandError with it on failure."""
    check_caps(caps)
    tmp = _tmp_mount(root)
    _check_mount_paths(
        root,
        [(src, _in_tmp(dest, tmp)) for src, dest in binds],
        [(src, _in_tmp(dest, tmp)) for src, dest in ro_binds],
        tmp,
    )
    fd = _program_fd()
    try:
        cmd = bwrap_argv(
            root, argv, caps=caps, seccomp_fd=fd, env=env, binds=binds, ro_binds=ro_binds,
            tmp=tmp,
        )  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                pass_fds=(fd,),
            )
        except FileNotFoundError as e:
            raise CommandError("bwrap is not installed (apt-get install bubblewrap)", cmd) from e
    finally:
        os.close(fd)
    if proc.returncode != 0:
        raise CommandError(f"{what} failed with exit status {proc.returncode}", cmd, proc.stdout)
    return proc.stdout
