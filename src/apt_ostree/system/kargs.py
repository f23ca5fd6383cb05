"""Kernel arguments of a deployment, and changing them (`apt-ostree kargs`).

`OSTree.KernelArgs` cannot be constructed through GI on libostree 2022.7, so
the editing rules of ostree's `ostree-kernel-args.c` (which rpm-ostree uses)
are implemented here:

- arguments keep their order; a key may appear several times (`console=`);
- `key` (no value) and `key=` (empty value) are different arguments;
- `--delete KEY` needs KEY to have one value; give `KEY=VALUE` to pick one of several;
- `--replace KEY=NEW` needs one value; `KEY=OLD=NEW` replaces the value OLD;
- a value with spaces is written in double quotes (`dyndbg="file x +p"`), and
  input is split on spaces outside double quotes, as ostree >= 2024.5 does
  (libostree 2022.7 writes such a value unquoted, which the kernel would split).

Every change is a new deployment of the same commit with the new arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.ostree import OSTree
from apt_ostree.ostree.kargs import OSTREE_KEY, Karg, KargsError, KernelArgs, split_kargs
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.system.origin import OriginError
from apt_ostree.system.sysroot import Sysroot, deploy

PROC_CMDLINE = Path("/proc/cmdline")
# Arguments that bootloaders add to /proc/cmdline (as ostree filters them).
PROC_CMDLINE_FILTERED = ("BOOT_IMAGE=", "initrd=")


@dataclass
class KargsEdit:
    """The requested changes, each option's value split as a kernel command line."""

    append: list[str] = field(default_factory=list)
    append_if_missing: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    delete_if_present: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.append or self.append_if_missing or self.delete or self.delete_if_present
            or self.replace
        )  # fmt: skip

    def validate(self) -> None:
        """Reject malformed input before anything is read or written."""
        for option, values in (
            ("--append", self.append), ("--append-if-missing", self.append_if_missing),
            ("--delete", self.delete), ("--delete-if-present", self.delete_if_present),
            ("--replace", self.replace),
        ):  # fmt: skip
            for value in values:
                for arg in split_kargs(value):
                    key = arg.partition("=")[0]
                    if not key:
                        raise KargsError(f'invalid {option} "{arg}": it has no key')
                    if key == OSTREE_KEY:
                        raise KargsError(
                            f'{option} "{arg}": the "ostree" karg is written by ostree'
                            " on every deployment and cannot be changed"
                        )

    def apply(self, kargs: KernelArgs) -> KernelArgs:
        """The arguments after this edit, in rpm-ostree's order: delete, replace,
        append, append-if-missing, delete-if-present."""
        out = KernelArgs(kargs.kargs)
        steps = (
            (self.delete, out.delete), (self.replace, out.replace), (self.append, out.append),
            (self.append_if_missing, out.append_if_missing),
            (self.delete_if_present, out.delete_if_present),
        )  # fmt: skip
        for values, step in steps:
            for value in values:
                for arg in split_kargs(value):
                    step(arg)
        return out


def read_proc_cmdline(path: Path = PROC_CMDLINE) -> KernelArgs:
    """The running kernel's arguments, without what the bootloader added."""
    args = [
        Karg.parse(arg)
        for arg in split_kargs(path.read_text())
        if not arg.startswith(PROC_CMDLINE_FILTERED)
    ]
    return KernelArgs(args)


def deployment_kargs(deployment: OSTree.Deployment) -> KernelArgs:
    bootconfig = deployment.get_bootconfig()
    options = bootconfig.get("options") if bootconfig is not None else None
    return KernelArgs.from_string(options)


def target_deployment(
    sysroot: Sysroot, index: int | None, osname: str | None = None
) -> tuple[int, OSTree.Deployment]:
    """The deployment whose arguments are shown or changed.

    Default: the first deployment of the OS (`osname`, else the booted or default
    deployment's), that is the pending deployment if there is one, else the booted
    one (offline: the default deployment).
    """
    deployments = sysroot.deployment_objects()
    if not deployments:
        raise KargsError(f"the sysroot at {sysroot.path} has no deployments")
    if index is not None:
        if not 0 <= index < len(deployments):
            raise KargsError(
                f"invalid --deploy-index {index}: the sysroot has {len(deployments)}"
                f" deployment(s), indexes 0 to {len(deployments) - 1}"
            )
        return index, deployments[index]
    osname = osname or sysroot.default_osname()
    for i, d in enumerate(deployments):
        if d.get_osname() == osname:
            return i, d
    raise KargsError(f'no deployment of "{osname}"')  # unreachable: default_osname has one


def show_kargs(
    sysroot: Sysroot,
    *,
    index: int | None = None,
    import_proc_cmdline: bool = False,
    proc_cmdline: Path = PROC_CMDLINE,
    osname: str | None = None,
) -> KernelArgs:
    """The kernel arguments `kargs` without changes prints."""
    if import_proc_cmdline:
        _require_booted(sysroot)
        return read_proc_cmdline(proc_cmdline)
    return deployment_kargs(target_deployment(sysroot, index, osname)[1])


def _require_booted(sysroot: Sysroot) -> None:
    if not sysroot.booted:
        raise KargsError(
            f"--import-proc-cmdline needs the booted system; {sysroot.path} is an offline sysroot"
        )


@dataclass
class KargsResult:
    changed: bool
    kargs: KernelArgs
    source: DeploymentInfo
    new: DeploymentInfo | None = None


def change_kargs(
    sysroot: Sysroot,
    edit: KargsEdit,
    *,
    index: int | None = None,
    import_proc_cmdline: bool = False,
    proc_cmdline: Path = PROC_CMDLINE,
    osname: str | None = None,
) -> KargsResult:
    """Deploy the source deployment's commit again with edited kernel arguments.

    Needs the sysroot lock. Nothing is written when the edit fails or changes
    nothing (the `ostree=` argument, which libostree rewrites, does not count).
    """
    assert sysroot._locked, "change_kargs() needs the sysroot lock"
    edit.validate()
    if import_proc_cmdline:
        _require_booted(sysroot)
        booted = sysroot.ostree.get_booted_deployment()
        deployments = sysroot.deployment_objects()
        i = next(n for n, d in enumerate(deployments) if d.equal(booted))
        source = deployments[i]
        current = read_proc_cmdline(proc_cmdline)
    else:
        i, source = target_deployment(sysroot, index, osname)
        current = deployment_kargs(source)
    info = sysroot.deployments()[i]
    new = edit.apply(current)
    if new.without_ostree() == deployment_kargs(source).without_ostree():
        return KargsResult(False, new, info)
    try:
        origin = sysroot.origin_of(source)
    except OriginError as e:
        raise KargsError(f"cannot redeploy {info.id}: {e}") from e
    deploy(sysroot, info.osname, info.checksum, origin, kargs=new.without_ostree())
    return KargsResult(True, new, info, sysroot.deployments()[0])
