"""The sysroot apt-ostree works on: the booted system (`/`) or an offline one.

Every change happens inside `Sysroot.locked(...)`, which holds libostree's
sysroot lock and records who holds it, so that a second caller is told.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apt_ostree import history
from apt_ostree.cancel import point_of_no_return
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree import sysroot as ostree_sysroot
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.system import bootfailures, finalize
from apt_ostree.system.origin import Origin

BOOTED_FLAG = Path("/run/ostree-booted")


class NotBootedError(AptOstreeError):
    pass


class LockedError(AptOstreeError):
    pass


def lock_info_path(path: Path, booted: bool) -> Path:
    # On a booted system /sysroot may be read-only; /run always is writable.
    return Path("/run/apt-ostree/lock") if booted else path / "ostree/apt-ostree.lock"


class Sysroot:
    """A loaded sysroot; `booted` when it is the running system."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        self.booted = path.resolve() == Path("/")
        if self.booted and not BOOTED_FLAG.exists():
            raise NotBootedError(
                "this system is not booted from an OSTree deployment;"
                " use --sysroot PATH to work on an offline sysroot"
            )
        if not self.booted and not ostree_sysroot.is_sysroot(path):
            raise AptOstreeError(f"{path} is not an OSTree sysroot (no ostree/repo, ostree/deploy)")
        self.path = path
        self.ostree = ostree_sysroot.load(path)
        self._locked = False
        # `--lock-finalization`: the deployment that deploy() stages waits for
        # `finalize-deployment` (booted systems only; checked before any work).
        self.lock_finalization = False
        # Who holds the lock (`locked(command)`): recorded with each deployment made.
        self.command = ""

    # -- reading -----------------------------------------------------------

    @property
    def repo(self) -> OSTree.Repo:
        _, repo = self.ostree.get_repo(None)
        return repo

    def reload(self) -> None:
        self.ostree.load(None)

    def deployments(self) -> list[DeploymentInfo]:
        return [
            ostree_sysroot.deployment_info(self.ostree, d, i)
            for i, d in enumerate(self.ostree.get_deployments())
        ]

    def deployment_objects(self) -> list[OSTree.Deployment]:
        return list(self.ostree.get_deployments())

    def default_osname(self) -> str:
        booted = self.ostree.get_booted_deployment()
        if booted is not None:
            return str(booted.get_osname())
        deployments = self.ostree.get_deployments()
        if deployments:
            return str(deployments[0].get_osname())
        raise AptOstreeError(f"the sysroot at {self.path} has no deployments")

    def merge_deployment(self, osname: str) -> OSTree.Deployment:
        """The deployment whose /etc and origin a new deployment starts from."""
        merge = self.ostree.get_merge_deployment(osname)
        if merge is None:
            raise AptOstreeError(f'no deployment of "{osname}" to start from')
        return merge

    def origin_of(self, deployment: OSTree.Deployment) -> Origin:
        return Origin.from_dict(ostree_sysroot.keyfile_dict(deployment.get_origin()))

    def require_booted_for_reboot(self) -> None:
        """`--reboot` only makes sense for the running system: fail before any change."""
        if not self.booted:
            raise AptOstreeError(
                f"--reboot needs the booted system; {self.path} is an offline sysroot"
            )

    # -- locking -----------------------------------------------------------

    @contextmanager
    def locked(self, command: str) -> Iterator[Sysroot]:
        """Hold the sysroot lock for a change; fail at once if someone else has it."""
        info_path = lock_info_path(self.path, self.booted)
        if not ostree_sysroot.try_lock(self.ostree):
            holder = _read_lock_info(info_path)
            raise LockedError(f"another operation is in progress{holder}")
        try:
            _write_lock_info(info_path, command)
            self._locked = True
            self.command = command
            # Changes may write the boot configuration (`status` never needs this).
            from apt_ostree.boot import grubcfg

            grubcfg.export_generator(self.repo)
            self.reload()
            yield self
        finally:
            self._locked = False
            info_path.unlink(missing_ok=True)
            self.ostree.unlock()


def _write_lock_info(path: Path, command: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "command": command}))
    tmp.replace(path)


def _read_lock_info(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f' (pid {info["pid"]}, "{info["command"]}")'
    except (OSError, ValueError, KeyError):
        return ""


def command_line() -> str:
    """How the running command was invoked, for the lock holder's description."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if not skip and not arg.startswith("--sysroot"):
            args.append(arg)
        skip = arg == "--sysroot"  # its value is the next argument
    return " ".join(["apt-ostree", *args[:3]])


def deploy(
    sysroot: Sysroot,
    osname: str,
    checksum: str,
    origin: Origin,
    *,
    kargs: list[str] | None = None,
    merge: OSTree.Deployment | None = None,
) -> None:
    """Make a new deployment of `checksum` the default at next boot.

    Booted: staged, finalized by ostree at shutdown. Offline: written now;
    the previous default stays as the rollback deployment. Fails before any
    change when /boot has no room for the new deployment's boot files.

    The origin's client-side initramfs state applies to every deployment:
    `regenerate-initramfs` deploys `checksum` with its initramfs rebuilt
    (system/initramfs.py).
    """
    assert sysroot._locked, "deploy() needs the sysroot lock"
    from apt_ostree.system.initramfs import commit_for, keep_commits
    from apt_ostree.system.initramfs_etc import DeployOptions, stage_overlay

    checksum = commit_for(sysroot, checksum, origin)
    keep_commits(sysroot, checksum)
    merge = merge if merge is not None else sysroot.merge_deployment(osname)
    if kargs is None:
        bootconfig = merge.get_bootconfig()
        options = bootconfig.get("options") if bootconfig is not None else None
        kargs = options.split() if options else []
    # A full /boot would fail halfway through libostree's write: refuse first.
    from apt_ostree.ostree.bootfs import require_boot_space

    require_boot_space(sysroot.ostree, sysroot.path, osname, checksum, booted=sysroot.booted)
    keyfile = ostree_sysroot.origin_keyfile(origin.to_dict())
    point_of_no_return()
    try:
        # initramfs-etc: the tracked files of /etc, as they are now.
        options = DeployOptions(kargs, stage_overlay(sysroot, merge, origin))
        if sysroot.booted:
            locked = sysroot.lock_finalization
            finalize.lock_finalization(locked)
            sysroot.ostree.stage_tree_with_options(
                osname, checksum, keyfile, merge, options.opts, None
            )
            # libostree removes the lock file with the staged deployment it replaces
            # (Debian 13's 2025.x): a change stacked onto a locked staged one. Its own
            # `locked` deploy option is not used: finalize-deployment removes the file,
            # which would not unlock a deployment staged with it.
            finalize.lock_finalization(locked)
        else:
            _, new = sysroot.ostree.deploy_tree_with_options(
                osname, checksum, keyfile, merge, options.opts, None
            )
            # Before it becomes the default: a failure leaves an unused deployment only.
            from apt_ostree.system.sysusers import add_missing_accounts

            add_missing_accounts(Path(sysroot.ostree.get_deployment_directory(new).get_path()))
            ostree_sysroot.write_deployment(sysroot.ostree, osname, new, merge)
            options.forget_staged()  # copied to the offline sysroot's /boot
    except GLib.Error as e:
        raise AptOstreeError(f"cannot deploy {checksum[:12]}: {e.message}") from e
    # A failed finalization of an earlier boot has been superseded (docs/status.md).
    finalize.clear_failure(sysroot.path, osname)
    history.record_deployment(sysroot.path, osname, checksum, sysroot.command)
    bootfailures.clear_last(sysroot.path, osname)
    sysroot.reload()


def reboot() -> None:
    """Ask systemd to reboot into the new default deployment."""
    from apt_ostree.run import run  # here: subprocess would slow every `status`

    run(["systemctl", "reboot"], capture=False, what="systemctl reboot")
