"""Run a program inside a tree with bubblewrap: the tree is /, no network,
private pid/ipc/uts, fresh /proc, /dev, /tmp and /run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from apt_ostree.errors import CommandError

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def bwrap_argv(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    ro_binds: Sequence[tuple[Path, str]] = (),
    network: bool = False,
    caps: Sequence[str] | None = None,
) -> list[str]:
    cmd = [
        "bwrap",
        "--bind", os.fspath(root), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        "--tmpfs", "/run",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent",
        "--chdir", "/",
        "--clearenv",
        "--setenv", "PATH", SANDBOX_PATH,
        "--setenv", "HOME", "/root",
        "--setenv", "LC_ALL", "C.UTF-8",
        "--setenv", "DEBIAN_FRONTEND", "noninteractive",
    ]  # fmt: skip
    if not network:
        cmd.append("--unshare-net")
    if caps is not None:
        # Only what the program needs; the rest of root's power is dropped.
        cmd += ["--cap-drop", "ALL"]
        for cap in caps:
            cmd += ["--cap-add", cap]
    for src, dest in binds:
        cmd += ["--bind", os.fspath(src), dest]
    for src, dest in ro_binds:
        cmd += ["--ro-bind", os.fspath(src), dest]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, value]
    cmd += ["--", *argv]
    return cmd


def _ensure_tmp(root: Path) -> None:
    """In the OSTree layout /tmp is a symlink to sysroot/tmp; bubblewrap mounts
    its tmpfs on the link's target, which must exist."""
    tmp = root / "tmp"
    if tmp.is_symlink():
        target = os.readlink(tmp)
        resolved = root / target.lstrip("/") if target.startswith("/") else root / target
        resolved.mkdir(parents=True, exist_ok=True)


def run_in_tree(
    root: Path,
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    ro_binds: Sequence[tuple[Path, str]] = (),
    caps: Sequence[str] | None = None,
) -> str:
    """Run `argv` with `root` as /; return its output, raise CommandError with it on failure."""
    _ensure_tmp(root)
    cmd = bwrap_argv(root, argv, env=env, binds=binds, ro_binds=ro_binds, caps=caps)
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    except FileNotFoundError as e:
        raise CommandError("bwrap is not installed (apt-get install bubblewrap)", cmd) from e
    if proc.returncode != 0:
        raise CommandError(f"{what} failed with exit status {proc.returncode}", cmd, proc.stdout)
    return proc.stdout
