"""What each OS method does: its arguments checked at the call, its work as a call
into `apt_ostree.system` that the transaction runs under the sysroot lock.

A bad argument fails the method call (InvalidArgument) before any transaction
exists; everything the system finds wrong later ends the transaction instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apt_ostree.daemon.bus import INVALID_ARGUMENT, MethodError
from apt_ostree.errors import AptOstreeError

if TYPE_CHECKING:
    from apt_ostree.reporter import Reporter
    from apt_ostree.system.sysroot import Sysroot

CLEANUP_WHAT = ("pending", "rollback", "base", "repomd")


@dataclass
class Operation:
    """One request, checked: `run` does the work on the locked sysroot."""

    method: str
    osname: str
    run: Callable[[Sysroot, Reporter], None]


def _invalid(message: str) -> MethodError:
    return MethodError(INVALID_ARGUMENT, message)


def _options(method: str, options: dict[str, Any], known: dict[str, type]) -> dict[str, Any]:
    """`options` (a{sv}) with every key known and of the right type."""
    for key, value in options.items():
        if key not in known:
            names = ", ".join(f'"{k}"' for k in known) or "none"
            raise _invalid(f'{method}: unknown option "{key}" (known: {names})')
        expected = known[key]
        # bool is an int in Python; a{sv} keeps them apart, and so must we.
        if type(value) is not expected and not (
            expected is list and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise _invalid(f'{method}: option "{key}" must be of type {_dbus_type(expected)}')
    return options


def _dbus_type(t: type) -> str:
    return {bool: "b", int: "i", str: "s", list: "as"}.get(t, "?")


# -- Upgrade ------------------------------------------------------------------------


def upgrade_operation(osname: str, options: dict[str, Any]) -> Operation:
    opts = _options("Upgrade", options, {"allow-downgrade": bool})
    allow_downgrade = bool(opts.get("allow-downgrade", False))

    def run(sysroot: Sysroot, reporter: Reporter) -> None:
        from apt_ostree.system.upgrade import upgrade, version_of

        outcome = upgrade(sysroot, osname, allow_downgrade=allow_downgrade, reporter=reporter)
        if not outcome.changed:
            reporter.message("No upgrade available.")
            return
        version = version_of(outcome.new)
        label = outcome.new.checksum + (f" (version {version})" if version else "")
        reporter.message(f"Packages: {outcome.diff.summary()}")
        if outcome.staged:
            reporter.message(f"Staged {label} as the next boot's deployment of {osname}")
        else:
            reporter.message(f"Deployed {label} as the default deployment of {osname}")

    return Operation("Upgrade", osname, run)


# -- Rollback -----------------------------------------------------------------------


def rollback_operation(osname: str, options: dict[str, Any]) -> Operation:
    _options("Rollback", options, {})

    def run(sysroot: Sysroot, reporter: Reporter) -> None:
        from apt_ostree.system.rollback import rollback

        # rollback() reorders the whole sysroot, as `apt-ostree rollback` does.
        new = rollback(sysroot).new_default
        reporter.message(f"Moving '{new.checksum}.{new.serial}' to be first deployment")

    return Operation("Rollback", osname, run)


# -- KernelArgs ---------------------------------------------------------------------


def kernel_args_operation(
    osname: str, append: list[str], delete: list[str], options: dict[str, Any]
) -> Operation:
    from apt_ostree.system.kargs import KargsEdit

    opts = _options(
        "KernelArgs", options,
        {"append-if-missing": list, "delete-if-present": list, "replace": list},
    )  # fmt: skip
    edit = KargsEdit(
        append=append, delete=delete,
        append_if_missing=opts.get("append-if-missing", []),
        delete_if_present=opts.get("delete-if-present", []),
        replace=opts.get("replace", []),
    )  # fmt: skip
    if edit.empty:
        raise _invalid("KernelArgs: no change of the kernel arguments was requested")
    try:
        edit.validate()
    except AptOstreeError as e:
        raise _invalid(str(e)) from e

    def run(sysroot: Sysroot, reporter: Reporter) -> None:
        from apt_ostree.system.kargs import change_kargs

        result = change_kargs(sysroot, edit)
        if result.changed:
            reporter.message("Kernel arguments updated.")
        else:
            reporter.message("Kernel arguments unchanged")

    return Operation("KernelArgs", osname, run)


# -- PkgChange ----------------------------------------------------------------------


def pkg_change_operation(
    osname: str, install: list[str], uninstall: list[str], options: dict[str, Any]
) -> Operation:
    from apt_ostree.system.packages import PackageChange

    opts = _options(
        "PkgChange", options, {"allow-inactive": bool, "idempotent": bool, "cache-only": bool}
    )
    if not install and not uninstall:
        raise _invalid("PkgChange: name packages to install or uninstall")
    for name in [*install, *uninstall]:
        if not name or name.startswith("-") or any(c.isspace() for c in name):
            raise _invalid(f'PkgChange: "{name}" is not a package name')
        if "/" in name or name.endswith(".deb"):
            # A path would be opened by the daemon as root on the caller's behalf.
            raise _invalid(f'PkgChange: local .deb files are not supported over D-Bus: "{name}"')
    change = PackageChange(
        install=install, uninstall=uninstall,
        allow_inactive=bool(opts.get("allow-inactive", False)),
        idempotent=bool(opts.get("idempotent", False)),
    )  # fmt: skip
    cache_only = bool(opts.get("cache-only", False))

    def run(sysroot: Sysroot, reporter: Reporter) -> None:
        from apt_ostree.system.packages import change_packages

        outcome = change_packages(sysroot, osname, change, cache_only=cache_only, reporter=reporter)
        if not outcome.changed:
            reporter.message("No change.")
            return
        if outcome.layer is not None:
            plan = outcome.layer.plan
            for p in plan.install:
                old = f"{p.replaces} -> " if p.replaces is not None else ""
                reporter.message(f"Installed: {p.name} {old}{p.version} ({p.arch})")
            for r in plan.remove:
                reporter.message(f"Removed: {r.name} {r.version}")
            if plan.inactive:
                reporter.message(f"Inactive requests (in the base): {', '.join(plan.inactive)}")
        verb = "Staged deployment" if outcome.staged else "Deployed"
        reporter.message(f"{verb} {outcome.checksum}")

    return Operation("PkgChange", osname, run)


# -- Cleanup ------------------------------------------------------------------------


def cleanup_operation(osname: str, what: list[str]) -> Operation:
    from apt_ostree.system.cleanup import CleanupRequest

    unknown = [w for w in what if w not in CLEANUP_WHAT]
    if unknown:
        known = ", ".join(f'"{w}"' for w in CLEANUP_WHAT)
        raise _invalid(f'Cleanup: unknown item "{unknown[0]}" (known: {known})')
    if not what:
        raise _invalid(f"Cleanup: name at least one of {', '.join(CLEANUP_WHAT)}")
    req = CleanupRequest(**{w: True for w in what})

    def run(sysroot: Sysroot, reporter: Reporter) -> None:
        from apt_ostree.system.cleanup import cleanup

        result = cleanup(sysroot, req)
        for role, d in result.removed:
            reporter.message(f"Removed {role} deployment {d.osname} {d.checksum}.{d.serial}")
        for d in result.kept_pinned:
            reporter.message(f"Kept pinned deployment {d.osname} {d.checksum}.{d.serial}")
        if (req.pending or req.rollback) and not result.removed:
            reporter.message("Deployments unchanged.")
        if result.pruned:
            reporter.message(f"Freed: {result.bytes_freed} bytes ({result.objects_pruned} objects)")
        if result.cache_bytes_freed is not None:
            reporter.message(f"Freed cached metadata: {result.cache_bytes_freed} bytes")

    return Operation("Cleanup", osname, run)
