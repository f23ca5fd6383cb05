"""data/lib/record-boot (apt-ostree-boot-record.service): one line per boot with the
deployment that the kernel's ostree= argument leads to, run in bubblewrap over a
fake /proc/cmdline, /ostree and /var."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fixtures.sysroot import TOP

SCRIPT = TOP / "data/lib/record-boot"
DEPLOYMENT = "ab" * 32 + ".1"


def _run(tmp_path: Path, cmdline: str) -> list[dict[str, object]]:
    ostree, var = tmp_path / "ostree", tmp_path / "var"
    deploy = ostree / "deploy/debian/deploy" / DEPLOYMENT
    deploy.mkdir(parents=True, exist_ok=True)
    boot = ostree / "boot.1/debian/cd34/0"
    if not boot.is_symlink():
        boot.parent.mkdir(parents=True)
        boot.symlink_to(f"../../../deploy/debian/deploy/{DEPLOYMENT}")
    var.mkdir(exist_ok=True)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    # A root of its own (bubblewrap's tmpfs): the host gets no /ostree, and the
    # script stays reachable wherever the checkout is (under /var too).
    subprocess.run(
        ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
         "--symlink", "usr/sbin", "/sbin", "--symlink", "usr/lib", "/lib",
         "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
         "--bind", ostree, "/ostree", "--bind", var, "/var",
         "--ro-bind", tmp_path / "cmdline", "/proc/cmdline",
         "--ro-bind", SCRIPT, "/record-boot", "/record-boot"],
        check=True,
    )  # fmt: skip
    record = var / "lib/apt-ostree/boots"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_a_boot_is_recorded_once_with_its_deployment(tmp_path: Path) -> None:
    cmdline = "BOOT_IMAGE=/vmlinuz root=LABEL=root ostree=/ostree/boot.1/debian/cd34/0 quiet"
    (entry,) = _run(tmp_path, cmdline)
    assert entry["deployment"] == DEPLOYMENT
    assert entry["boot-id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert isinstance(entry["time"], int)
    assert _run(tmp_path, cmdline) == [entry]  # the same boot: nothing more


def test_nothing_is_recorded_without_an_ostree_deployment(tmp_path: Path) -> None:
    assert _run(tmp_path, "root=/dev/vda1 quiet") == []
    assert _run(tmp_path, "ostree=/ostree/boot.1/debian/nosuch/0") == []
