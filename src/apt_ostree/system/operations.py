"""Every change the CLI asks for, as one call: a `Request` (apt_ostree.requests) is
checked by `prepare` before any work, and the `Operation` it gives runs on the
locked sysroot and returns what it did as plain data (the CLI renders it).

apt-ostreed runs an Operation in a transaction; the in-process path (`--sysroot`)
runs the same Operation under the same lock: both print the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.debian.remotereplace import parse_replacement
from apt_ostree.errors import AptOstreeError
from apt_ostree.requests import LocalPackage, Request, RequestError

if TYPE_CHECKING:
    from apt_ostree.ostree.repo import CommitInfo
    from apt_ostree.reporter import Reporter
    from apt_ostree.system.kargs import KargsEdit
    from apt_ostree.system.packages import PackageChange, PackageOutcome
    from apt_ostree.system.sysroot import Sysroot
    from apt_ostree.system.upgrade import Outcome

CLEANUP_WHAT = ("pending", "rollback", "base", "repomd")
Result = dict[str, Any]
Run = Callable[["Sysroot", str, "Reporter"], Result]


@dataclass
class Operation:
    """A checked request: `run(sysroot, osname, reporter)` does the work on the locked
    sysroot and returns the result document."""

    request: Request
    run_locked: Run

    @property
    def method(self) -> str:
        return self.request.method

    def run(self, sysroot: Sysroot, reporter: Reporter) -> Result:
        osname = self.request.osname or sysroot.default_osname()
        return self.run_locked(sysroot, osname, reporter)


def prepare(request: Request) -> Operation:
    """Check `request` (types, then meaning) and return what runs it; RequestError
    with a one-line message when it is wrong. Nothing is read or written."""
    request.check_types()
    handler = _HANDLERS.get(request.method)
    if handler is None:
        raise RequestError(f"{request.method} is not available yet")
    run = handler(request)
    if request.flag("lock-finalization"):
        run = _locked_finalization(run)
    return Operation(request, run)


def _locked_finalization(run: Run) -> Run:
    """`--lock-finalization`: the new deployment is staged locked; only a booted
    system stages, so an offline sysroot is refused before any work."""

    def locked(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        if not sysroot.booted:
            raise AptOstreeError(
                "--lock-finalization needs the booted system: an offline sysroot's"
                " deployments are written at once, not staged"
            )
        sysroot.lock_finalization = True
        try:
            return run(sysroot, osname, reporter)
        finally:
            sysroot.lock_finalization = False

    return locked


# -- package changes riding on upgrade, deploy, rebase -------------------------------


def _check_names(method: str, names: list[str]) -> None:
    for name in names:
        if not name or name.startswith("-") or any(c.isspace() for c in name):
            raise RequestError(f'{method}: "{name}" is not a package name')
        if "/" in name or name.endswith(".deb"):
            # A path would be opened by the daemon as root on the caller's behalf.
            raise RequestError(
                f'{method}: "{name}" is a path: pass local .deb files as file descriptors'
            )


@contextlib.contextmanager
def _local_files(sysroot: Sysroot, packages: list[LocalPackage]) -> Iterator[dict[Path, str]]:
    """Readable paths for the caller's .debs, with their labels: the caller's own
    path in-process; over the bus, a private copy of what the file descriptor holds."""
    if all(p.path is not None for p in packages):
        yield {p.path: p.label for p in packages if p.path is not None}
        return
    tmp = sysroot.path / "ostree/repo/tmp"
    work = Path(tempfile.mkdtemp(prefix="apt-ostree-fds-", dir=tmp if tmp.is_dir() else None))
    try:
        files: dict[Path, str] = {}
        for i, p in enumerate(packages):
            assert p.fd is not None
            dest = work / str(i) / (Path(p.label).name or "package.deb")
            dest.parent.mkdir()
            with dest.open("wb") as out:
                offset = 0
                while chunk := os.pread(p.fd, 1 << 20, offset):
                    out.write(chunk)
                    offset += len(chunk)
            files[dest] = p.label
        yield files
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Modifiers:
    install: list[str]
    uninstall: list[str]
    local: list[LocalPackage]

    @property
    def empty(self) -> bool:
        return not (self.install or self.uninstall or self.local)


def _modifiers(request: Request) -> _Modifiers:
    mods = _Modifiers(
        request.strings("install-packages"),
        request.strings("uninstall-packages"),
        request.local("install-local-packages"),
    )
    _check_names(request.method, mods.install + mods.uninstall)
    return mods


@contextlib.contextmanager
def _package_change(sysroot: Sysroot, mods: _Modifiers) -> Iterator[PackageChange | None]:
    from apt_ostree.system.packages import PackageChange

    if mods.empty:
        yield None
        return
    with _local_files(sysroot, mods.local) as files:
        yield PackageChange(
            install=mods.install, install_local=list(files), uninstall=mods.uninstall,
            labels=files,
        )  # fmt: skip


def _commit_json(info: CommitInfo) -> Result:
    version = info.metadata.get("version")
    return {
        "checksum": info.checksum,
        "version": str(version) if version else None,
        "timestamp": info.timestamp,
    }


def outcome_json(outcome: Outcome) -> Result:
    from apt_ostree.system.db import diff_to_json

    return {
        "changed": outcome.changed,
        "osname": outcome.osname,
        "refspec": outcome.refspec,
        "new": _commit_json(outcome.new),
        "diff": diff_to_json(outcome.diff),
        "staged": outcome.staged,
        "deployed": outcome.deployed,
    }


def _fetch(request: Request) -> Any:
    from apt_ostree.system.upgrade import Fetch

    fetch = Fetch(request.flag("cache-only"), request.flag("download-only"))
    if request.flag("preview") and fetch.download_only:
        raise RequestError("--download-only cannot be used with --preview")
    return fetch


# -- Upgrade, Deploy, Rebase ---------------------------------------------------------


def _upgrade(request: Request) -> Run:
    allow_downgrade = request.flag("allow-downgrade")
    check = request.flag("check") or request.flag("preview")
    mods = _modifiers(request)
    if check and not mods.empty:
        raise RequestError("--install and --uninstall cannot be used with --check or --preview")
    fetch = _fetch(request)
    if check and fetch.download_only:
        raise RequestError("--download-only cannot be used with --check or --preview")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.upgrade import check_update, upgrade

        if check:
            outcome = check_update(
                sysroot, osname, allow_downgrade=allow_downgrade, reporter=reporter
            )
            return outcome_json(outcome)
        with _package_change(sysroot, mods) as change:
            outcome = upgrade(
                sysroot, osname, allow_downgrade=allow_downgrade, reporter=reporter,
                change=change, fetch=fetch,
            )  # fmt: skip
        return outcome_json(outcome)

    return run


def _deploy(request: Request) -> Run:
    from apt_ostree.system.upgrade import parse_revision

    revision = request.arg("revision")
    try:
        parse_revision(revision)
    except AptOstreeError as e:
        raise RequestError(str(e)) from e
    skip_branch_check = request.flag("skip-branch-check")
    mods = _modifiers(request)
    fetch, preview = _fetch(request), request.flag("preview")
    if preview and not mods.empty:
        raise RequestError("--install and --uninstall cannot be used with --preview")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.upgrade import deploy_revision

        with _package_change(sysroot, mods) as change:
            outcome = deploy_revision(
                sysroot, osname, revision, skip_branch_check=skip_branch_check,
                reporter=reporter, change=change, fetch=fetch, preview=preview,
                disallow_downgrade=request.flag("disallow-downgrade"),
            )  # fmt: skip
        return outcome_json(outcome)

    return run


def _rebase(request: Request) -> Run:
    refspec = request.arg("refspec") or None
    revision = request.arg("revision") or None
    branch = request.options.get("branch") or None
    remote = request.options.get("remote") or None
    if refspec is not None and branch is not None:
        raise RequestError("give either REFSPEC or --branch, not both")
    if refspec is None and branch is None and remote is None:
        raise RequestError("rebase needs a REFSPEC, --branch or --remote")
    skip_purge = request.flag("skip-purge")
    mods = _modifiers(request)
    fetch = _fetch(request)
    url = request.options.get("custom-origin-url") or None
    description = request.options.get("custom-origin-description") or None
    if (url is None) != (description is None):
        raise RequestError(
            "--custom-origin-url and --custom-origin-description must be given together"
        )
    custom_origin = (url, description) if url is not None and description is not None else None

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.upgrade import current_state, rebase, rebase_target

        origin = current_state(sysroot, osname).origin
        target = rebase_target(origin, refspec, branch, remote)
        with _package_change(sysroot, mods) as change:
            outcome = rebase(
                sysroot, osname, target, revision, skip_purge=skip_purge, reporter=reporter,
                change=change, fetch=fetch, custom_origin=custom_origin,
                disallow_downgrade=request.flag("disallow-downgrade"),
            )  # fmt: skip
        return {**outcome_json(outcome), "from": origin.refspec, "to": target}

    return run


# -- PkgChange -----------------------------------------------------------------------


def _pkg_change(request: Request) -> Run:
    install, uninstall = list(request.arg("install")), list(request.arg("uninstall"))
    removals = request.strings("override-remove")
    resets = request.strings("override-reset")
    remote = request.strings("override-replace")
    _check_names("PkgChange", install + uninstall + removals + resets + remote)
    for spec in remote:
        parse_replacement(spec)
    local = request.local("install-local-packages")
    replacements = request.local("override-replace-local")
    flags = ("uninstall-all", "override-reset-all", "reset-layering", "reset-initramfs")
    asked = install or uninstall or removals or resets or local or replacements or remote
    if not asked and not any(request.flag(f) for f in flags):
        raise RequestError("PkgChange: name packages to install or uninstall")
    dry_run, download_only = request.flag("dry-run"), request.flag("download-only")
    cache_only = request.flag("cache-only")
    apply_live = request.flag("apply-live")
    if apply_live and (dry_run or download_only or request.flag("lock-finalization")):
        raise RequestError(
            "--apply-live cannot be used with --dry-run, --download-only or --lock-finalization"
        )

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.packages import PackageChange, change_packages

        if apply_live and not sysroot.booted:
            raise AptOstreeError(
                "--apply-live needs the booted system: an offline sysroot runs nothing"
            )

        with (
            _local_files(sysroot, local) as local_files,
            _local_files(sysroot, replacements) as replacement_files,
        ):
            change = PackageChange(
                install=install,
                install_local=list(local_files),
                uninstall=uninstall,
                uninstall_all=request.flag("uninstall-all"),
                remove_base=removals,
                replace_local=list(replacement_files),
                replace_remote=remote,
                reset_removals=resets,
                reset_all_overrides=request.flag("override-reset-all"),
                reset_layering=request.flag("reset-layering"),
                reset_initramfs=request.flag("reset-initramfs"),
                allow_inactive=request.flag("allow-inactive"),
                idempotent=request.flag("idempotent"),
                labels={**local_files, **replacement_files},
            )
            outcome = change_packages(
                sysroot, osname, change, dry_run=dry_run, download_only=download_only,
                cache_only=cache_only, reporter=reporter,
            )  # fmt: skip
        result = package_outcome_json(outcome)
        if apply_live and outcome.staged:
            from apt_ostree.system.livefs import apply_live as live

            result["live"] = live(sysroot, osname, reporter=reporter)
        return result

    return run


def package_outcome_json(outcome: PackageOutcome) -> Result:
    layer = None
    if outcome.layer is not None:
        plan = outcome.layer.plan
        layer = {
            "install": [
                {"name": p.name, "version": p.version, "arch": p.arch, "replaces": p.replaces}
                for p in plan.install
            ],
            "remove": [{"name": r.name, "version": r.version} for r in plan.remove],
            "inactive": list(plan.inactive),
            "download-size": plan.download_size,
            "new-users": list(outcome.layer.new_users),
        }
    return {
        "changed": outcome.changed,
        "layer": layer,
        "checksum": outcome.checksum,
        "staged": outcome.staged,
    }


def _register_driver(request: Request) -> Run:
    name = str(request.options.get("register-driver", ""))
    unit = str(request.options.get("driver-unit", ""))

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.driver import register_driver

        register_driver(sysroot.booted, name, unit)
        return {"driver-name": name, "driver-sd-unit": unit}

    return run


# -- Rollback, KernelArgs, Cleanup, RefreshMd ----------------------------------------


def _rollback(request: Request) -> Run:
    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.db import DbError, diff_commits, diff_to_json
        from apt_ostree.system.rollback import rollback

        result = rollback(sysroot, osname)
        new = result.new_default
        try:
            diff: Result | None = diff_to_json(
                diff_commits(sysroot.repo, result.current.checksum, new.checksum)
            )
        except DbError:  # a commit without a package list
            diff = None
        return {
            "new": {"osname": new.osname, "checksum": new.checksum, "serial": new.serial},
            "diff": diff,
            "booted": sysroot.booted,
        }

    return run


def kargs_edit(request: Request) -> KargsEdit:
    """The KargsEdit of a KernelArgs request, checked."""
    from apt_ostree.system.kargs import KargsEdit

    edit = KargsEdit(
        append=list(request.arg("append")), delete=list(request.arg("delete")),
        append_if_missing=request.strings("append-if-missing"),
        delete_if_present=request.strings("delete-if-present"),
        replace=request.strings("replace"),
    )  # fmt: skip
    if edit.empty:
        raise RequestError("KernelArgs: no change of the kernel arguments was requested")
    try:
        edit.validate()
    except AptOstreeError as e:
        raise RequestError(str(e)) from e
    return edit


def _kernel_args(request: Request) -> Run:
    edit = kargs_edit(request)
    index = request.options.get("deploy-index")
    import_proc_cmdline = request.flag("import-proc-cmdline")
    if import_proc_cmdline and index is not None:
        raise RequestError("--import-proc-cmdline and --deploy-index cannot be used together")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.kargs import change_kargs

        result = change_kargs(
            sysroot, edit, index=index, import_proc_cmdline=import_proc_cmdline,
            osname=None if index is not None else osname,
        )  # fmt: skip
        return {"changed": result.changed, "booted": sysroot.booted}

    return run


def _set_initramfs_state(request: Request) -> Run:
    from apt_ostree.system.initramfs import check_args

    regenerate, args = bool(request.arg("regenerate")), list(request.arg("args"))
    if args and not regenerate:
        raise RequestError("SetInitramfsState: --arg needs --enable")
    try:
        check_args(args)
    except AptOstreeError as e:
        raise RequestError(str(e)) from e

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.initramfs import set_initramfs_state

        outcome = set_initramfs_state(sysroot, osname, regenerate, args, reporter)
        return {"changed": outcome.changed, "booted": sysroot.booted}

    return run


def _initramfs_etc(request: Request) -> Run:
    from apt_ostree.system.initramfs_etc import normalize

    track, untrack = list(request.arg("track")), list(request.arg("untrack"))
    untrack_all, force_sync = bool(request.arg("untrack-all")), bool(request.arg("force-sync"))
    if not (track or untrack or untrack_all or force_sync):
        raise RequestError("InitramfsEtc: no change was requested")
    try:
        for path in track + untrack:
            normalize(path)
    except AptOstreeError as e:
        raise RequestError(str(e)) from e

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.initramfs_etc import set_initramfs_etc

        outcome = set_initramfs_etc(
            sysroot, osname, track, untrack, untrack_all=untrack_all, force_sync=force_sync
        )
        return {
            "changed": outcome.changed, "tracked": outcome.tracked,
            "untracked": outcome.untracked, "booted": sysroot.booted,
        }  # fmt: skip

    return run


def _cleanup(request: Request) -> Run:
    from apt_ostree.system.cleanup import CleanupRequest

    what = list(request.arg("what"))
    unknown = [w for w in what if w not in CLEANUP_WHAT]
    if unknown:
        known = ", ".join(f'"{w}"' for w in CLEANUP_WHAT)
        raise RequestError(f'Cleanup: unknown item "{unknown[0]}" (known: {known})')
    if not what:
        raise RequestError(f"Cleanup: name at least one of {', '.join(CLEANUP_WHAT)}")
    req = CleanupRequest(**{w: True for w in what})

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.cleanup import cleanup

        result = cleanup(sysroot, req, osname)

        def entry(d: Any) -> Result:
            return {"osname": d.osname, "checksum": d.checksum, "serial": d.serial}

        return {
            "removed": [{"role": role, **entry(d)} for role, d in result.removed],
            "kept-pinned": [entry(d) for d in result.kept_pinned],
            "deployments-asked": req.pending or req.rollback,
            "pruned": result.pruned,
            "objects-pruned": result.objects_pruned,
            "bytes-freed": result.bytes_freed,
            "local-debs-removed": result.local_debs_removed,
            "cache-bytes-freed": result.cache_bytes_freed,
        }

    return run


def _refresh_md(request: Request) -> Run:
    force = request.flag("force")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.search import refresh

        refresh(sysroot, osname, force=force, reporter=reporter)
        return {}

    return run


def _apply_live(request: Request) -> Run:
    target = request.options.get("target") or None
    reset, allow_replacement = request.flag("reset"), request.flag("allow-replacement")
    if reset and target is not None:
        raise RequestError("--reset and --target cannot be used together")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.livefs import apply_live

        return apply_live(
            sysroot, osname, target=target, reset=reset, allow_replacement=allow_replacement,
            reporter=reporter,
        )  # fmt: skip

    return run


def _finalize_deployment(request: Request) -> Run:
    expected = request.options.get("checksum") or None
    if expected is None and not request.flag("allow-missing-checksum"):
        raise RequestError(
            "finalize-deployment needs the staged deployment's CHECKSUM"
            " (or --allow-missing-checksum)"
        )
    allow_unlocked = request.flag("allow-unlocked")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.run import run as run_command
        from apt_ostree.system.db import base_checksum
        from apt_ostree.system.finalize import finalization_locked, lock_finalization

        staged = sysroot.ostree.get_staged_deployment() if sysroot.booted else None
        if staged is None:
            raise AptOstreeError("No staged deployment")
        checksum = str(staged.get_csum())
        base = base_checksum(sysroot.repo, checksum)
        if expected is not None and expected not in (checksum, base):
            raise AptOstreeError(f"Expected staged base checksum {expected}, but found {base}")
        if not finalization_locked() and not allow_unlocked:
            raise AptOstreeError("Staged deployment already unlocked")
        lock_finalization(False)
        # Queued, not waited for: the caller hears the result before the shutdown.
        run_command(["systemctl", "reboot", "--no-block"], capture=False, what="systemctl reboot")
        return {"checksum": checksum, "base-checksum": base, "rebooting": True}

    return run


# -- AutomaticUpdateTrigger -----------------------------------------------------------


def prepare_automatic_update(request: Request, policy: str) -> Operation:
    """`upgrade --trigger-automatic-update-policy` under `policy`: `check` fetches the
    new commit's metadata only (status shows it as the available update), `stage`
    upgrades (staged on a booted system)."""
    request.check_types()
    if policy not in ("check", "stage"):
        raise RequestError(f"automatic updates are off (AutomaticUpdatePolicy={policy})")

    def run(sysroot: Sysroot, osname: str, reporter: Reporter) -> Result:
        from apt_ostree.system.upgrade import check_update, upgrade

        if policy == "check":
            outcome = check_update(sysroot, osname, allow_downgrade=False, reporter=reporter)
        else:
            outcome = upgrade(sysroot, osname, allow_downgrade=False, reporter=reporter)
        return {**outcome_json(outcome), "policy": policy}

    return Operation(request, run)


_HANDLERS: dict[str, Callable[[Request], Run]] = {
    "Upgrade": _upgrade,
    "Deploy": _deploy,
    "RegisterDriver": _register_driver,
    "Rebase": _rebase,
    "PkgChange": _pkg_change,
    "Rollback": _rollback,
    "KernelArgs": _kernel_args,
    "SetInitramfsState": _set_initramfs_state,
    "InitramfsEtc": _initramfs_etc,
    "Cleanup": _cleanup,
    "RefreshMd": _refresh_md,
    "FinalizeDeployment": _finalize_deployment,
    "ApplyLive": _apply_live,
}
