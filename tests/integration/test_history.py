"""`apt-ostree ex history`: the boots of the machine, with the deployments that they
started and the commands that made them (docs/cli.md, "ex history")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.sysroot import SysrootFixture, apt_ostree, deployments_json

RECORDS = "ostree/deploy/debian/var/lib/apt-ostree"


def _boot(sysroot: Path, boot_id: str, deployment: dict[str, Any], when: int) -> None:
    """What data/lib/record-boot appends when the machine starts `deployment`."""
    name = f"{deployment['checksum']}.{deployment['serial']}"
    with (sysroot / RECORDS / "boots").open("a") as f:
        f.write(json.dumps({"boot-id": boot_id, "deployment": name, "time": when}) + "\n")


def _history(sysroot: Path, *args: str) -> list[dict[str, Any]]:
    proc = apt_ostree(sysroot, "ex", "history", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    entries: list[dict[str, Any]] = json.loads(proc.stdout)
    return entries


def test_history_lists_boots_newest_first_with_what_made_each_deployment(
    sysroot: SysrootFixture,
) -> None:
    path = sysroot.path
    # The sysroot's first deployment was made by compose; the second by `deploy`.
    (v1,) = deployments_json(path)
    assert apt_ostree(path, "deploy", "version=2").returncode == 0
    v2 = deployments_json(path)[0]
    made = [json.loads(line) for line in (path / RECORDS / "deployments").read_text().splitlines()]
    assert [(m["checksum"], m["command"]) for m in made] == [
        (v1["checksum"], "apt-ostree compose"),
        (v2["checksum"], "apt-ostree deploy version=2"),
    ]
    now = made[-1]["time"]
    _boot(path, "a" * 32, v1, made[0]["time"])
    _boot(path, "b" * 32, v2, now + 10)
    _boot(path, "c" * 32, v2, now + 20)  # the same deployment again: one entry
    (path / RECORDS / "boots").open("a").write('{"boot-id": "cut by a power lo')

    latest, first = _history(path)
    assert latest["checksum"] == v2["checksum"] and latest["version"] == "2"
    assert (latest["boot-count"], latest["first-boot-timestamp"]) == (2, now + 10)
    assert latest["boot-timestamp"] == now + 20
    assert latest["create-command"] == "apt-ostree deploy version=2"
    assert first["checksum"] == v1["checksum"] and first["create-command"] == "apt-ostree compose"
    assert len(_history(path, "-n", "1")) == 1

    text = apt_ostree(path, "ex", "history").stdout
    assert "BootCount: 2; first booted on " in text
    assert "CreateCommand: apt-ostree deploy version=2" in text
    assert text.count("BootTimestamp:") == 2


def test_history_of_a_machine_that_never_booted_is_empty(sysroot: SysrootFixture) -> None:
    assert _history(sysroot.path, "--all") == []
    proc = apt_ostree(sysroot.path, "ex", "history", "--limit", "0")
    assert proc.returncode == 1 and "not a positive number" in proc.stderr


def test_history_does_not_follow_a_link_planted_for_its_records(sysroot: SysrootFixture) -> None:
    records = sysroot.path / RECORDS
    target = sysroot.path / "elsewhere"
    target.write_text("")
    (records / "deployments").unlink()
    (records / "deployments").symlink_to(target)
    assert apt_ostree(sysroot.path, "deploy", "version=2").returncode == 0
    assert target.read_text() == ""
