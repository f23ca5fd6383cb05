"""The state of a sysroot as rpm-ostree's `status --json` describes it."""

from __future__ import annotations

from typing import Any

from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.system.bootfailures import last_failure
from apt_ostree.system.driver import read_driver
from apt_ostree.system.finalize import finalization_locked, read_failure
from apt_ostree.system.origin import Origin, OriginError
from apt_ostree.system.sysroot import Sysroot

PACKAGES_KEY = "apt-ostree.packages"
BASE_KEY = "apt-ostree.base-checksum"
REPLACED_KEY = "apt-ostree.replaced-base-packages"
REMOTE_REPLACED_KEY = "apt-ostree.replaced-base-remote-packages"
# The source of every remote replacement, in rpm-ostree's `requested-base-remote-replacements`
# and `base-remote-replacements`: the machine's APT sources (rpm-ostree names a repo).
REMOTE_SOURCE = "apt"
# Commit metadata that status shows under its own keys, or that is too big to show
# (rpm-ostree's filter_commit_meta drops its package list the same way).
FILTERED_META = (
    PACKAGES_KEY,
    "apt-ostree.layered-packages",
    "apt-ostree.removed-base-packages",
    REPLACED_KEY,
    REMOTE_REPLACED_KEY,
)


def _json_value(value: Any) -> Any:
    """A commit metadata value (unpacked GVariant) as JSON: tuples become arrays,
    byte strings hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def commit_meta_json(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in sorted(meta.items()) if k not in FILTERED_META}


def package_tuple(name: str, version: str, arch: str) -> list[Any]:
    """rpm-ostree's package tuple (nevra, name, epoch, version, release, arch) for a
    Debian package: name_version_arch, the name, the version's epoch (0 without one),
    its upstream part, its Debian revision ("" for a native package), the architecture."""
    epoch, sep, rest = version.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return [f"{name}_{version}_{arch}", name, int(epoch), upstream, revision, arch]


def _base_packages(meta: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (version, arch) of a commit's package list."""
    return {str(p[0]): (str(p[1]), str(p[2])) for p in meta.get(PACKAGES_KEY, [])}


def _commit_meta(sysroot: Sysroot, checksum: str) -> tuple[dict[str, Any], int, str | None]:
    try:
        info = ostree_repo.read_commit(sysroot.repo, checksum)
    except ostree_repo.RepoError:
        return {}, 0, None
    return info.metadata, info.timestamp, info.parent


def deployment_status(sysroot: Sysroot, d: DeploymentInfo) -> dict[str, Any]:
    """One entry of `deployments[]`: every key always present, empty where empty."""
    meta, timestamp, _ = _commit_meta(sysroot, d.checksum)
    try:
        origin: Origin | None = Origin.from_dict(d.origin)
    except OriginError:
        origin = None
    base = meta.get(BASE_KEY)
    base_meta, base_timestamp = (meta, timestamp)
    if base:
        base_meta, base_timestamp, _ = _commit_meta(sysroot, base)
    base_packages = _base_packages(base_meta)

    def removed(name: str) -> list[Any]:
        version, arch = base_packages.get(name, ("", ""))
        return package_tuple(name, version, arch)

    def replaced(name: str, old: str, new: str) -> list[Any]:
        arch = base_packages.get(name, ("", ""))[1]
        return [package_tuple(name, new, arch), package_tuple(name, old, arch)]

    remote = [replaced(*entry) for entry in meta.get(REMOTE_REPLACED_KEY, [])]
    status: dict[str, Any] = {
        "id": d.id,
        "osname": d.osname,
        "serial": d.serial,
        "checksum": d.checksum,
        "base-checksum": base or None,
        "version": base_meta.get("version") or meta.get("version"),
        "timestamp": timestamp,
        "base-timestamp": base_timestamp,
        "origin": origin.refspec if origin else None,
        "booted": d.booted,
        "staged": d.staged,
        # Staged with --lock-finalization: waits for `finalize-deployment`.
        "finalization-locked": d.staged and sysroot.booted and finalization_locked(),
        "pinned": d.pinned,
        "unlocked": d.unlocked,
        "kernel-arguments": d.kargs,
        "requested-packages": origin.requested_packages if origin else [],
        "requested-local-packages": origin.requested_local if origin else [],
        "requested-base-removals": origin.removed_base if origin else [],
        "requested-base-local-replacements": origin.replaced_local if origin else [],
        # rpm-ostree's (source, packages) pairs; the one source is the machine's APT sources.
        "requested-base-remote-replacements": (
            [[REMOTE_SOURCE, origin.replaced_remote]] if origin and origin.replaced_remote else []
        ),
        "packages": list(meta.get("apt-ostree.layered-packages", [])),
        # rpm-ostree's shapes: package tuples, and [new, old] pairs of them
        "base-removals": [removed(n) for n in meta.get("apt-ostree.removed-base-packages", [])],
        "base-local-replacements": [replaced(*entry) for entry in meta.get(REPLACED_KEY, [])],
        # rpm-ostree's {source: [[new, old], ...]}
        "base-remote-replacements": {REMOTE_SOURCE: remote} if remote else {},
        "base-commit-meta": commit_meta_json(base_meta),
        "regenerate-initramfs": origin.regenerate_initramfs if origin else False,
        "initramfs-args": origin.initramfs_args if origin else [],
        "initramfs-etc": origin.initramfs_etc if origin else [],
        "gpg-enabled": _gpg_enabled(sysroot, origin),
        **_image_keys(origin, base_meta),
    }

    # Keys rpm-ostree leaves out when they do not apply.
    if d.booted and sysroot.booted:
        from apt_ostree.system.livestate import live_keys

        status.update(live_keys(sysroot.repo, d.checksum, d.serial))
    if base:
        status["layered-commit-meta"] = commit_meta_json(meta)
        if base_meta.get("version"):
            status["base-version"] = str(base_meta["version"])
        # apt-ostree's own: a layered kernel (system/kernels.py) is booted, not the base's.
        kernel = meta.get("ostree.linux")
        if kernel and kernel != base_meta.get("ostree.linux"):
            status["kernel"] = str(kernel)
    if origin is not None and origin.image is None:
        status.update(_pending_base(sysroot, origin, base or d.checksum))
        if origin.custom_origin:
            status["custom-origin"] = list(origin.custom_origin)
        if status["gpg-enabled"] and origin.remote is not None:
            status["signatures"] = _signatures(sysroot, origin.remote, base or d.checksum)
    return status


def _image_keys(origin: Origin | None, base_meta: dict[str, Any]) -> dict[str, Any]:
    """rpm-ostree's keys of a deployment that follows a container image."""
    if origin is None or origin.image is None:
        return {}
    return {
        "container-image-reference": origin.refspec,
        "container-image-reference-digest": base_meta.get("ostree.manifest-digest"),
    }


def _pending_base(sysroot: Sysroot, origin: Origin, base: str) -> dict[str, Any]:
    """The origin ref's commit in the repository when it is not the deployed base
    (pulled by `upgrade --check` or `--download-only`)."""
    tip = ostree_repo.resolve_ref(sysroot.repo, origin.refspec)
    if tip is None or tip == base:
        return {}
    meta, timestamp, _ = _commit_meta(sysroot, tip)
    pending: dict[str, Any] = {"pending-base-checksum": tip, "pending-base-timestamp": timestamp}
    if meta.get("version"):
        pending["pending-base-version"] = str(meta["version"])
    return pending


def _signatures(sysroot: Sysroot, remote: str, checksum: str) -> list[Any]:
    """The GPG signatures of the base commit, each as ostree's signature tuple (valid,
    sig-expired, key-expired, key-revoked, key-missing, fingerprint, timestamp, ...)."""
    try:
        result = sysroot.repo.verify_commit_for_remote(checksum, remote, None)
    except Exception:  # unsigned, or keys missing: ostree says why at pull time
        return []
    return [_json_value(result.get_all(i).unpack()) for i in range(result.count_all())]


def _gpg_enabled(sysroot: Sysroot, origin: Origin | None) -> bool:
    if origin is None or origin.remote is None:
        return False
    try:
        _, enabled = sysroot.repo.remote_get_gpg_verify(origin.remote)
    except Exception:  # an origin naming a remote that was deleted
        return False
    return bool(enabled)


def cached_update(sysroot: Sysroot, infos: list[DeploymentInfo]) -> dict[str, Any] | None:
    """A newer commit of the booted (offline: default) deployment's origin ref that the
    repository already holds, at least its metadata (`upgrade --check`, the automatic
    `check` policy, or a pull whose deployment was cancelled or lost); None if none.
    `staged` tells whether a pending deployment of the OS is made from it."""
    reference = next((d for d in infos if d.booted), infos[0] if infos else None)
    if reference is None:
        return None
    try:
        origin = Origin.from_dict(reference.origin)
    except OriginError:
        return None
    if origin.image is not None:
        return None  # `upgrade --check` of an image fetches only its manifest: nothing cached
    tip = ostree_repo.resolve_ref(sysroot.repo, origin.refspec)
    meta, _, _ = _commit_meta(sysroot, reference.checksum)
    base = str(meta.get(BASE_KEY) or reference.checksum)
    if tip is None or tip == base:
        return None
    try:
        new = ostree_repo.read_commit(sysroot.repo, tip)
        old = ostree_repo.read_commit(sysroot.repo, base)
    except ostree_repo.RepoError:
        return None
    if new.timestamp < old.timestamp:  # older: a downgrade is not an update
        return None
    from apt_ostree.system.db import diff_commit_infos, diff_to_json

    pending = [d for d in infos if d.osname == reference.osname and d.index < reference.index]
    staged = any(_base_of(sysroot, d.checksum) == tip for d in pending)
    version = new.metadata.get("version")
    return {
        "osname": reference.osname,
        "origin": origin.refspec,
        "checksum": tip,
        "version": str(version) if version else None,
        "timestamp": new.timestamp,
        "staged": staged,
        "diff": diff_to_json(diff_commit_infos(old, new)),
    }


def _base_of(sysroot: Sysroot, checksum: str) -> str:
    meta, _, _ = _commit_meta(sysroot, checksum)
    return str(meta.get(BASE_KEY) or checksum)


def sysroot_status(sysroot: Sysroot, *, booted_only: bool = False) -> dict[str, Any]:
    infos = sysroot.deployments()
    deployments = [deployment_status(sysroot, d) for d in infos]
    if booted_only:
        deployments = [d for d in deployments if d["booted"]]
    osnames = list(dict.fromkeys(d.osname for d in infos))
    failure = read_failure(sysroot.path, osnames, booted=sysroot.booted)
    return {
        "deployments": deployments,
        "finalize-failure": failure.to_json() if failure is not None else None,
        # The latest automatic rollback of health-checked boot (docs/health.md).
        "boot-failure": last_failure(sysroot.path, osnames),
        "transaction": None,
        "cached-update": cached_update(sysroot, infos),
        "update-driver": read_driver(sysroot.booted),
    }
