"""`compose sysroot`: a fresh OSTree sysroot with one deployment of a composed commit.

Image builders and the tests use it; the boot/disk-image work builds on it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree import history
from apt_ostree.boot import grubcfg
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import Gio, GLib, OSTree
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree import sysroot as ostree_sysroot
from apt_ostree.reporter import Reporter


@dataclass
class SysrootRequest:
    path: Path
    repo: Path
    ref: str
    revision: str | None = None  # a commit of `ref` other than its tip
    osname: str = "debian"
    kargs: list[str] = field(default_factory=list)
    remote: str | None = None  # origin remote name; its URL is `remote_url`
    remote_url: str | None = None
    gpg_verify: bool = True
    gpg_keys: list[Path] = field(default_factory=list)
    bootloader: str = "none"


def _check(req: SysrootRequest) -> None:
    if req.path.exists() and not req.path.is_dir():
        raise AptOstreeError(f"{req.path} is not a directory")
    if req.path.is_dir() and (req.path / "ostree").exists():
        raise AptOstreeError(f"{req.path} already holds a sysroot")
    if not ostree_repo.is_repo(req.repo):
        raise AptOstreeError(f"{req.repo} is not an OSTree repository")
    if (req.remote is None) != (req.remote_url is None):
        raise AptOstreeError("--remote takes NAME=URL")
    reason = ostree_repo.validate_ref(req.ref)
    if reason is not None:
        raise AptOstreeError(f'invalid ref "{req.ref}": {reason}')
    source = ostree_repo.open_repo(req.repo)
    if ostree_repo.resolve_ref(source, req.ref) is None:
        raise AptOstreeError(f'ref "{req.ref}" is not in {req.repo}')
    if req.revision is not None and not ostree_repo.commit_exists(source, req.revision):
        raise AptOstreeError(f"commit {req.revision} is not in {req.repo}")


def _set_bootloader(repo: OSTree.Repo, bootloader: str) -> None:
    config = repo.copy_config()
    config.set_string("sysroot", "bootloader", bootloader)
    repo.write_config(config)


def add_remote(
    repo: OSTree.Repo, name: str, url: str, *, gpg_verify: bool, gpg_keys: list[Path]
) -> None:
    options = GLib.Variant(
        "a{sv}",
        {
            "gpg-verify": GLib.Variant("b", gpg_verify),
            # As `remote add`: with a key, the summary must be signed as well.
            "gpg-verify-summary": GLib.Variant("b", gpg_verify and bool(gpg_keys)),
        },
    )
    try:
        repo.remote_change(
            None, OSTree.RepoRemoteChange.ADD_IF_NOT_EXISTS, name, url, options, None
        )
        for key in gpg_keys:
            stream = Gio.File.new_for_path(os.fspath(key)).read(None)
            repo.remote_gpg_import(name, stream, None, None)
    except GLib.Error as e:
        raise AptOstreeError(f'cannot add remote "{name}": {e.message}') from e


def pull_local(repo: OSTree.Repo, source: Path, ref: str, revision: str | None = None) -> str:
    """Copy `ref` (at `revision`, default its tip) and its objects from the local `source`."""
    opts = {"refs": GLib.Variant("as", [ref]), "depth": GLib.Variant("i", 0)}
    if revision is not None:
        opts["override-commit-ids"] = GLib.Variant("as", [revision])
    options = GLib.Variant("a{sv}", opts)
    try:
        repo.pull_with_options(f"file://{source.resolve()}", options, None, None)
    except GLib.Error as e:
        raise AptOstreeError(f"cannot pull {ref} from {source}: {e.message}") from e
    checksum = ostree_repo.resolve_ref(repo, ref)
    assert checksum is not None
    return checksum


def _fstab(path: Path) -> str:
    """Mount lines for the filesystems that hold the sysroot and its /boot, if any."""
    lines = ["# Written by apt-ostree compose sysroot."]
    for target, mountpoint, passno in ((path, "/", 1), (path / "boot", "/boot", 2)):
        proc = subprocess.run(
            ["findmnt", "-n", "-o", "UUID,FSTYPE", "--mountpoint", os.fspath(target)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        fields = proc.stdout.split()
        if proc.returncode == 0 and len(fields) == 2:
            uuid, fstype = fields
            lines.append(f"UUID={uuid} {mountpoint} {fstype} defaults {passno} {passno}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _bootloader_env(bootloader: str) -> Iterator[None]:
    """libostree's grub2 backend runs `OSTREE_GRUB2_EXEC`: point it at apt-ostree's generator."""
    if bootloader != "grub2" or grubcfg.EXEC_ENV in os.environ:
        yield
        return
    with grubcfg.generator_exec() as exe:
        os.environ[grubcfg.EXEC_ENV] = os.fspath(exe)
        try:
            yield
        finally:
            del os.environ[grubcfg.EXEC_ENV]


def make_sysroot(req: SysrootRequest, reporter: Reporter) -> str:
    """Initialize the sysroot and deploy `req.ref`; return the deployed checksum."""
    _check(req)
    with _bootloader_env(req.bootloader):
        return _make_sysroot(req, reporter)


# The physical root's top-level directories, as `ostree admin init-fs` makes them:
# the deployments' /tmp is a link to sysroot/tmp (docs/layout.md).
INIT_FS_DIRS = {"boot": 0o755, "dev": 0o755, "proc": 0o755, "run": 0o755, "sys": 0o755,
                "tmp": 0o1777}  # fmt: skip


def _init_fs(path: Path) -> None:
    for name, mode in INIT_FS_DIRS.items():
        (path / name).mkdir(exist_ok=True)
        os.chmod(path / name, mode)


def _make_sysroot(req: SysrootRequest, reporter: Reporter) -> str:
    req.path.mkdir(parents=True, exist_ok=True)
    _init_fs(req.path)
    sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(os.fspath(req.path)))
    try:
        sysroot.ensure_initialized(None)
        sysroot.load(None)
        sysroot.init_osname(req.osname, None)
        _, repo = sysroot.get_repo(None)
        _set_bootloader(repo, req.bootloader)
        # libostree reads sysroot.bootloader when it opens the repo, not on reload.
        sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(os.fspath(req.path)))
        sysroot.load(None)
        _, repo = sysroot.get_repo(None)
        reporter.task_begin(f"Pulling {req.ref} from {req.repo}")
        checksum = pull_local(repo, req.repo, req.ref, req.revision)
        reporter.task_end(checksum)
        if req.remote is not None and req.remote_url is not None:
            add_remote(repo, req.remote, req.remote_url, gpg_verify=req.gpg_verify,
                       gpg_keys=req.gpg_keys)  # fmt: skip
            repo.set_ref_immediate(req.remote, req.ref, checksum, None)
            repo.set_ref_immediate(None, req.ref, None, None)
            refspec = f"{req.remote}:{req.ref}"
        else:
            refspec = req.ref
        origin = ostree_sysroot.origin_keyfile({"origin": {"refspec": refspec}})
        reporter.task_begin(f"Deploying {checksum[:12]} as {req.osname}")
        _, deployment = sysroot.deploy_tree(req.osname, checksum, origin, None, req.kargs, None)
        ostree_sysroot.write_deployment(sysroot, req.osname, deployment, None)
        deploy_dir = req.path / sysroot.get_deployment_dirpath(deployment)
        (deploy_dir / "etc/fstab").write_text(_fstab(req.path))
        history.record_deployment(req.path, req.osname, checksum, "apt-ostree compose")
        reporter.task_end()
    except GLib.Error as e:
        raise AptOstreeError(f"cannot make the sysroot at {req.path}: {e.message}") from e
    return checksum
