"""Which deployment rollback, cleanup and db diff pick, booted and offline.

The booted cases cannot be reached from a test (nothing here is booted from
OSTree), so the planning functions are tested on deployment lists.
"""

from __future__ import annotations

import pytest

from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.system.cleanup import plan_cleanup
from apt_ostree.system.rollback import RollbackError, plan_rollback


def deployments(spec: str) -> list[DeploymentInfo]:
    """`spec`: one letter per deployment: B booted, S staged, P pinned, o other OS, . plain."""
    return [
        DeploymentInfo(
            index=i,
            osname="other" if c == "o" else "debian",
            checksum=f"c{i}",
            serial=0,
            bootserial=0,
            booted=c == "B",
            staged=c == "S",
            pinned=c == "P",
            kargs=[],
        )
        for i, c in enumerate(spec)
    ]


@pytest.mark.parametrize(
    ("spec", "booted", "order"),
    [
        ("B.", True, [1, 0]),  # the booted and rollback deployments swap
        ("B..", True, [1, 0, 2]),
        (".B", True, [1, 0]),  # a pending deployment on top: the booted one goes back first
        (".B.", True, [2, 0, 1]),  # rpm-ostree: the rollback goes first, before the pending
        ("..", False, [1, 0]),  # offline: the first two swap
        ("...", False, [1, 0, 2]),
        (".o.", False, [2, 0, 1]),  # the rollback is of the same OS
    ],
)
def test_plan_rollback(spec: str, booted: bool, order: list[int]) -> None:
    assert plan_rollback(deployments(spec), booted) == order


@pytest.mark.parametrize(("spec", "booted"), [("B", True), (".", False), (".o", False)])
def test_plan_rollback_without_a_rollback_deployment(spec: str, booted: bool) -> None:
    with pytest.raises(RollbackError, match=r"^no rollback deployment$"):
        plan_rollback(deployments(spec), booted)


def test_plan_rollback_refuses_with_a_staged_deployment() -> None:
    with pytest.raises(RollbackError, match="remove it with `apt-ostree cleanup -p` first"):
        plan_rollback(deployments("SB."), True)


@pytest.mark.parametrize(
    ("spec", "booted", "pending", "rollback", "keep", "removed"),
    [
        ("SB.", True, True, False, [1, 2], [("pending", 0)]),
        ("SB.", True, False, True, [0, 1], [("rollback", 2)]),
        ("SB.", True, True, True, [1], [("pending", 0), ("rollback", 2)]),
        ("B..", True, False, True, [0], [("rollback", 1), ("rollback", 2)]),
        ("B.P", True, False, True, [0, 2], [("rollback", 1)]),
        ("...", False, True, False, [0, 1, 2], []),  # offline: nothing is pending
        ("..o.", False, False, True, [0, 2], [("rollback", 1), ("rollback", 3)]),
    ],
)
def test_plan_cleanup(
    spec: str,
    booted: bool,
    pending: bool,
    rollback: bool,
    keep: list[int],
    removed: list[tuple[str, int]],
) -> None:
    kept, gone, _ = plan_cleanup(deployments(spec), booted, pending=pending, rollback=rollback)
    assert kept == keep
    assert [(role, d.index) for role, d in gone] == removed
