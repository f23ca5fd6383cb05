"""Rollback: make the previous deployment the default again, by reordering.

libostree 2022.7 has no `admin rollback`; as rpm-ostree does, the new order is
written with `write_deployments`. Nothing is deployed or deleted, so this is
one bootloader-configuration swap.

Deployment roles (of the OS being changed):

- booted system: *pending* deployments come before the booted one (a staged
  deployment is always pending), *rollback* deployments come after it;
- offline sysroot: nothing is booted, so the default deployment (the first)
  plays the booted one's part: no pending deployment, every later deployment
  of the same OS is a rollback deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from apt_ostree.cancel import point_of_no_return
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree import GLib, OSTree
from apt_ostree.ostree.bootfs import require_loader_space
from apt_ostree.ostree.sysroot import DeploymentInfo, writing_deployments
from apt_ostree.system.sysroot import Sysroot


class RollbackError(AptOstreeError):
    pass


@dataclass
class DeploymentRoles:
    osname: str
    current: DeploymentInfo  # the booted deployment; offline, the default one
    pending: list[DeploymentInfo]
    rollback: list[DeploymentInfo]


def deployment_roles(
    deployments: list[DeploymentInfo], booted_system: bool, osname: str | None = None
) -> DeploymentRoles:
    """The roles in the booted (offline: the default) deployment's OS, or in `osname`'s:
    for an OS that is not booted, its first deployment plays the booted one's part."""
    if not deployments:
        raise RollbackError("the sysroot has no deployments")
    current = None
    if booted_system:
        current = next((d for d in deployments if d.booted), None)
        if current is None:
            raise RollbackError("no deployment is marked as booted")
    if osname is not None and (current is None or current.osname != osname):
        current = next((d for d in deployments if d.osname == osname), None)
        if current is None:
            raise RollbackError(f'the sysroot has no deployment of "{osname}"')
    elif current is None:
        current = deployments[0]
    same_os = [d for d in deployments if d.osname == current.osname]
    return DeploymentRoles(
        osname=current.osname,
        current=current,
        pending=[d for d in same_os if d.index < current.index],
        rollback=[d for d in same_os if d.index > current.index],
    )


def plan_rollback(
    deployments: list[DeploymentInfo], booted_system: bool, osname: str | None = None
) -> list[int]:
    """The new order (indexes into `deployments`), the rollback target first.

    As rpm-ostree: the first rollback deployment goes first; with no rollback
    deployment but a pending one, the booted deployment goes back on top (which
    also undoes a rollback). A staged deployment must be removed first.
    """
    roles = deployment_roles(deployments, booted_system, osname)
    if not roles.rollback and not roles.pending:
        raise RollbackError("no rollback deployment")
    if roles.pending and roles.pending[0].staged:
        raise RollbackError(
            "a staged deployment is pending; remove it with `apt-ostree cleanup -p` first"
        )
    target = roles.rollback[0] if roles.rollback else roles.current
    return [target.index] + [d.index for d in deployments if d.index != target.index]


@dataclass
class RollbackResult:
    current: DeploymentInfo  # booted (offline: the previous default), to diff against
    previous_default: DeploymentInfo
    new_default: DeploymentInfo


def write_order(sysroot: Sysroot, deployments: list[OSTree.Deployment]) -> None:
    """Write exactly `deployments` (first = default) without the post-write cleanup:
    nothing was removed, so there is nothing to prune, and pruning walks every
    object of every deployment (the slow part of `write_deployments`)."""
    require_loader_space(sysroot.path)
    point_of_no_return()
    opts = OSTree.SysrootWriteDeploymentsOpts()
    opts.do_postclean = False
    try:
        with writing_deployments(sysroot.path):
            sysroot.ostree.write_deployments_with_options(deployments, opts, None)
    except GLib.Error as e:
        raise RollbackError(f"cannot write the deployments: {e.message}") from e
    sysroot.reload()


def rollback(sysroot: Sysroot, osname: str | None = None) -> RollbackResult:
    """Make the rollback deployment (of `osname`, default: the booted or default
    deployment's OS) the default. Needs the sysroot lock."""
    assert sysroot._locked, "rollback() needs the sysroot lock"
    infos = sysroot.deployments()
    order = plan_rollback(infos, sysroot.booted, osname)
    objects = sysroot.deployment_objects()
    write_order(sysroot, [objects[i] for i in order])
    return RollbackResult(
        current=deployment_roles(infos, sysroot.booted, osname).current,
        previous_default=infos[0],
        new_default=infos[order[0]],
    )
