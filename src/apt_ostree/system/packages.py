"""install, uninstall, override remove/reset, reset: change the origin's request
and rebuild the deployment from the base commit (no drift)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.debian.remotereplace import parse_replacement
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.reporter import NullReporter, Reporter
from apt_ostree.system.layering import LayerResult, base_of, build_layer, local_store
from apt_ostree.system.origin import Origin
from apt_ostree.system.sysroot import Sysroot, deploy


class PackageRequestError(AptOstreeError):
    pass


@dataclass
class PackageChange:
    install: list[str] = field(default_factory=list)
    install_local: list[Path] = field(default_factory=list)
    uninstall: list[str] = field(default_factory=list)
    uninstall_all: bool = False
    remove_base: list[str] = field(default_factory=list)
    replace_local: list[Path] = field(default_factory=list)
    # NAME or NAME=VERSION: base packages replaced from the APT sources.
    replace_remote: list[str] = field(default_factory=list)
    # Names whose override (remove or replace) is reset.
    reset_removals: list[str] = field(default_factory=list)
    reset_all_overrides: bool = False
    reset_layering: bool = False
    # `reset -i`: no initramfs regeneration, no tracked /etc files.
    reset_initramfs: bool = False
    allow_inactive: bool = False
    idempotent: bool = False
    # How the caller named a local .deb (by path), for messages: the daemon reads
    # a copy of what the caller passed it, never the caller's path.
    labels: dict[Path, str] = field(default_factory=dict)


@dataclass
class PackageOutcome:
    changed: bool
    origin: Origin
    layer: LayerResult | None = None
    checksum: str | None = None
    staged: bool = False


def default_deployment(sysroot: Sysroot, osname: str) -> DeploymentInfo:
    """The deployment a change starts from: the pending one if any, else the booted or
    (offline) the default one; changes accumulate as in rpm-ostree."""
    for d in sysroot.deployments():
        if d.osname == osname:
            return d
    raise AptOstreeError(f'the sysroot at {sysroot.path} has no deployment of "{osname}"')


def _deb_identity(path: Path, label: str) -> tuple[str, str]:
    """(sha256, name_version_arch) of a .deb file."""
    if not path.is_file():
        raise PackageRequestError(f"{label}: no such file")
    fields = subprocess.run(
        ["dpkg-deb", "--show", "--showformat=${Package}_${Version}_${Architecture}", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if fields.returncode != 0:
        error = fields.stderr.strip().replace(str(path), label)
        raise PackageRequestError(f"{label} is not a valid .deb: {error}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, fields.stdout.strip()


def _store_local(sysroot: Sysroot, path: Path, label: str | None = None) -> str:
    digest, nva = _deb_identity(path, label or str(path))
    store = local_store(sysroot)
    store.mkdir(parents=True, exist_ok=True)
    dest = store / f"{digest}.deb"
    if not dest.exists():
        tmp = dest.with_suffix(".tmp")
        shutil.copy2(path, tmp)
        tmp.replace(dest)
    return f"{digest}:{nva}"


def local_paths(sysroot: Sysroot, origin: Origin) -> list[Path]:
    """The stored .debs of the origin's local packages (`requested-local`)."""
    return _stored_paths(sysroot, origin.requested_local)


def replacement_paths(sysroot: Sysroot, origin: Origin) -> list[Path]:
    """The stored .debs that replace base packages (`[overrides] replace-local`)."""
    return _stored_paths(sysroot, origin.replaced_local)


def _stored_paths(sysroot: Sysroot, entries: list[str]) -> list[Path]:
    paths = []
    for entry in entries:
        digest = entry.split(":", 1)[0]
        path = local_store(sysroot) / f"{digest}.deb"
        if not path.exists():
            raise PackageRequestError(f"the local package {entry} is missing from {path.parent}")
        paths.append(path)
    return paths


def _local_name(entry: str) -> str:
    return entry.split(":", 1)[1].split("_", 1)[0]


def _remote_name(spec: str) -> str:
    """The package name of a replacement from the sources (NAME[:ARCH][=VERSION])."""
    return parse_replacement(spec)[0]


def apply_change(sysroot: Sysroot, origin: Origin, change: PackageChange) -> Origin:
    """The new origin; errors for requests that make no sense."""
    requested = list(origin.requested_packages)
    local = list(origin.requested_local)
    removed = list(origin.removed_base)
    replaced = list(origin.replaced_local)
    remote = list(origin.replaced_remote)
    if change.reset_layering:
        requested, local = [], []
    if change.uninstall_all:
        requested, local = [], []
    for name in change.uninstall:
        if name in requested:
            requested.remove(name)
        elif any(_local_name(e) == name for e in local):
            local = [e for e in local if _local_name(e) != name]
        elif not change.idempotent:
            raise PackageRequestError(f'package "{name}" is not currently requested')
    for name in change.install:
        if name in requested:
            if not change.idempotent:
                raise PackageRequestError(f'package "{name}" is already requested')
            continue
        requested.append(name)
    for path in change.install_local:
        entry = _store_local(sysroot, path, change.labels.get(path))
        if entry not in local:
            local.append(entry)
    if change.reset_all_overrides:
        removed, replaced, remote = [], [], []
    for name in change.reset_removals:
        if name in removed:
            removed.remove(name)
        elif any(_local_name(e) == name for e in replaced):
            replaced = [e for e in replaced if _local_name(e) != name]
        elif any(_remote_name(e) == name for e in remote):
            remote = [e for e in remote if _remote_name(e) != name]
        else:
            raise PackageRequestError(f'no override for package "{name}"')
    for name in change.remove_base:
        if name in removed:
            if not change.idempotent:
                raise PackageRequestError(f'package "{name}" is already removed')
            continue
        removed.append(name)
    for path in change.replace_local:
        entry = _store_local(sysroot, path, change.labels.get(path))
        # A new replacement of a package takes the place of the previous one.
        replaced = [e for e in replaced if _local_name(e) != _local_name(entry)]
        remote = [e for e in remote if _remote_name(e) != _local_name(entry)]
        replaced.append(entry)
    for spec in change.replace_remote:
        name = _remote_name(spec)
        replaced = [e for e in replaced if _local_name(e) != name]
        remote = [e for e in remote if _remote_name(e) != name]
        remote.append(spec)
    new = dataclasses.replace(
        origin,
        requested_packages=requested,
        requested_local=local,
        removed_base=removed,
        replaced_local=replaced,
        replaced_remote=remote,
    )
    if change.reset_initramfs:
        new = dataclasses.replace(
            new, regenerate_initramfs=False, initramfs_args=[], initramfs_etc=[]
        )
    return new


def change_packages(
    sysroot: Sysroot,
    osname: str,
    change: PackageChange,
    *,
    dry_run: bool = False,
    download_only: bool = False,
    cache_only: bool = False,
    reporter: Reporter | None = None,
) -> PackageOutcome:
    """Rebuild the deployment with the changed request and deploy it. The caller
    holds the sysroot lock."""
    reporter = reporter or NullReporter()
    current = default_deployment(sysroot, osname)
    origin = Origin.from_dict(current.origin)
    new_origin = apply_change(sysroot, origin, change)
    if new_origin.to_dict() == origin.to_dict():
        return PackageOutcome(False, origin)
    base = base_of(sysroot, current.checksum)
    assert current.path is not None
    outcome = PackageOutcome(True, new_origin)
    if new_origin.layered:
        outcome.layer = build_layer(
            sysroot, osname, base, new_origin,
            merge_etc=current.path / "etc",
            local_debs=local_paths(sysroot, new_origin),
            replace_debs=replacement_paths(sysroot, new_origin),
            allow_inactive=change.allow_inactive,
            dry_run=dry_run, download_only=download_only, cache_only=cache_only,
            reporter=reporter,
        )  # fmt: skip
        if dry_run or download_only:
            return outcome
        checksum = outcome.layer.checksum
        assert checksum is not None
    else:
        if dry_run or download_only:
            return outcome
        checksum = base
    reporter.task_begin(f"{'Staging' if sysroot.booted else 'Deploying'} {checksum[:12]}")
    deploy(sysroot, osname, checksum, new_origin, kargs=current.kargs)
    reporter.task_end()
    outcome.checksum = checksum
    outcome.staged = sysroot.booted
    return outcome
