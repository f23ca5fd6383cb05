"""OSTree sysroots and deployments through libostree, typed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree
from apt_ostree.ostree.kargs import split_kargs


class SysrootError(AptOstreeError):
    pass


def is_sysroot(path: Path) -> bool:
    return (path / "ostree/repo/config").is_file() and (path / "ostree/deploy").is_dir()


def load(path: Path) -> OSTree.Sysroot:
    sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(os.fspath(path)))
    try:
        sysroot.load(None)
    except GLib.Error as e:
        raise SysrootError(f"cannot load the sysroot at {path}: {e.message}") from e
    return sysroot


def try_lock(sysroot: OSTree.Sysroot) -> bool:
    try:
        _, acquired = sysroot.try_lock()
    except GLib.Error as e:
        raise SysrootError(f"cannot lock the sysroot: {e.message}") from e
    return bool(acquired)


def origin_keyfile(sections: dict[str, dict[str, str]]) -> GLib.KeyFile:
    kf = GLib.KeyFile.new()
    for group, values in sections.items():
        for key, value in values.items():
            kf.set_string(group, key, value)
    return kf


def keyfile_dict(kf: GLib.KeyFile | None) -> dict[str, dict[str, str]]:
    if kf is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    groups, _ = kf.get_groups()
    for group in groups:
        keys, _ = kf.get_keys(group)
        out[group] = {key: kf.get_value(group, key) for key in keys}
    return out


@dataclass
class DeploymentInfo:
    """What apt-ostree needs to know about one deployment."""

    index: int
    osname: str
    checksum: str
    serial: int
    bootserial: int
    booted: bool
    staged: bool
    pinned: bool
    kargs: list[str]
    origin: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    # libostree's unlocked state (`ostree admin unlock`): none, development, hotfix, transient
    unlocked: str = "none"

    @property
    def id(self) -> str:
        return f"{self.osname}-{self.checksum}.{self.serial}"


def deployment_info(
    sysroot: OSTree.Sysroot, deployment: OSTree.Deployment, index: int
) -> DeploymentInfo:
    booted = sysroot.get_booted_deployment()
    bootconfig = deployment.get_bootconfig()
    options = bootconfig.get("options") if bootconfig is not None else None
    path = Path(sysroot.get_path().get_path()) / sysroot.get_deployment_dirpath(deployment)
    return DeploymentInfo(
        index=index,
        osname=deployment.get_osname(),
        checksum=deployment.get_csum(),
        serial=deployment.get_deployserial(),
        bootserial=deployment.get_bootserial(),
        booted=booted is not None and deployment.equal(booted),
        staged=deployment.is_staged(),
        pinned=deployment.is_pinned(),
        kargs=split_kargs(options) if options else [],
        origin=keyfile_dict(deployment.get_origin()),
        path=path,
        unlocked=OSTree.Deployment.unlocked_state_to_string(deployment.get_unlocked()),
    )


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """libostree prints to stdout while writing deployments: keep stdout for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def writing_deployments(path: Path) -> Iterator[None]:
    """Around libostree's writes of deployments: stdout stays clean (libostree prints
    there), and the filesystem of /boot is thawed if this process dies meanwhile.

    libostree freezes that filesystem (FIFREEZE) to flush it. Debian 12's libostree
    (2022.7) leaves it frozen when the process is killed between freeze and thaw
    (kill -9, a killed daemon): its watchdog thaws on a timeout, not when its
    parent dies, and every later write to the filesystem hangs. Ours, in a
    session of its own, reads a pipe that only this process holds: at its end
    (we returned or died) it thaws, which is a no-op on a filesystem not frozen.
    """
    import subprocess  # here: `status` never writes, and starts faster without it

    read, write = os.pipe()
    watchdog = subprocess.Popen(
        ["sh", "-c", 'cat >/dev/null; exec fsfreeze --unfreeze "$1" 2>/dev/null', "sh",
         os.fspath(path / "boot")],
        stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    os.close(read)
    try:
        with stdout_to_stderr():
            yield
    finally:
        os.close(write)
        watchdog.wait()


def write_deployment(
    sysroot: OSTree.Sysroot,
    osname: str,
    new: OSTree.Deployment,
    merge: OSTree.Deployment | None,
) -> None:
    """Make `new` the default, keeping the booted and merge deployments (and pinned ones).

    The repository is pruned only when a deployment was removed: otherwise no
    object became unreferenced, and the prune's walk over the whole repository
    would be most of the cost of a deployment.
    """

    def ids() -> set[tuple[str, str, int]]:
        return {
            (d.get_osname(), d.get_csum(), d.get_deployserial()) for d in sysroot.get_deployments()
        }

    before = ids()
    with writing_deployments(Path(sysroot.get_path().get_path())):
        sysroot.simple_write_deployment(
            osname, new, merge, OSTree.SysrootSimpleWriteDeploymentFlags.NO_CLEAN, None
        )
        sysroot.load(None)
        if before - ids():
            sysroot.cleanup(None)
        else:
            # Old boot versions and deployment directories only; no repo walk.
            sysroot.prepare_cleanup(None)


def write_deployments(sysroot: OSTree.Sysroot, deployments: list[OSTree.Deployment]) -> None:
    """Write exactly `deployments`, in this order (the first is the default)."""
    with writing_deployments(Path(sysroot.get_path().get_path())):
        sysroot.write_deployments(deployments, None)
