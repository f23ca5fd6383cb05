"""Health-checked boot on the booted system: judge this boot, fall back for good.

Run by two units at every boot (docs/health.md):

- `check` (apt-ostree-health-check.service, before boot-complete.target): if
  GRUB fell back to the previous deployment (the counter of the probation is
  spent and the booted deployment is not the default), record the failure and
  make the rollback permanent; then run the health checks. A failed required
  check is recorded; on a boot on probation the machine reboots (GRUB counts
  the attempt), otherwise the unit fails and boot-complete.target is not reached.
- `bless` (apt-ostree-health-bless.service, after boot-complete.target): the
  boot on probation is good: clear the counter (the one write of a good boot).

Nothing is read beyond the GRUB environment block and the menu when the
machine is not on probation and has no checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from apt_ostree.boot import probation
from apt_ostree.errors import AptOstreeError
from apt_ostree.ostree.sysroot import DeploymentInfo
from apt_ostree.run import run
from apt_ostree.settings import ConfigError, HealthSettings, load_health_settings
from apt_ostree.system import bootfailures, healthchecks
from apt_ostree.system.sysroot import Sysroot

BOOT = Path("/boot")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# The units log to the journal only (the console may be an administrator's shell);
# a reboot on probation is also said on the console, through the kernel's log.
KMSG = Path("/dev/kmsg")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _say(text: str) -> None:
    print(f"apt-ostree-health: {text}", flush=True)


def _say_on_console(text: str) -> None:
    _say(text)
    try:
        with KMSG.open("w") as f:
            f.write(f"<2>apt-ostree-health: {text}\n")  # KERN_CRIT
    except OSError:
        pass


def _booted_and_default(sysroot: Sysroot) -> tuple[DeploymentInfo, DeploymentInfo]:
    infos = sysroot.deployments()
    booted = next((d for d in infos if d.booted), None)
    if booted is None:
        raise AptOstreeError("no deployment is marked as booted")
    default = next(d for d in infos if d.osname == booted.osname)
    return booted, default


def failure_record(sysroot: Sysroot, failed: DeploymentInfo) -> dict[str, Any]:
    """Which deployment failed, when and why."""
    from apt_ostree.system.status import deployment_status

    described = deployment_status(sysroot, failed)
    check = bootfailures.check_failure_of(sysroot.path, failed.osname, failed.id)
    reason = f"{check['check']} failed: {check['output']}" if check else None
    return {
        "deployment": failed.id,
        "osname": failed.osname,
        "checksum": failed.checksum,
        "base-checksum": described["base-checksum"] or failed.checksum,
        "version": described["version"],
        "kernel-arguments": failed.kargs,
        "time": check["time"] if check else _now(),
        "reason": reason or bootfailures.NO_BOOT_COMPLETE,
        "check": check["check"] if check else None,
        "rolled-back-to": None,
    }


def fall_back_for_good(sysroot: Sysroot) -> dict[str, Any]:
    """GRUB booted the previous deployment: record why, make it the default."""
    from apt_ostree.system.rollback import write_order

    with sysroot.locked("automatic rollback"):
        booted, failed = _booted_and_default(sysroot)
        record = failure_record(sysroot, failed)
        record["rolled-back-to"] = booted.id
        bootfailures.record_failure(sysroot.path, failed.osname, record)
        objects = sysroot.deployment_objects()
        order = [booted.index] + [i for i in range(len(objects)) if i != booted.index]
        write_order(sysroot, [objects[i] for i in order])
    probation.disarm(sysroot.path / "boot")
    return record


def check(settings: HealthSettings, boot: Path = BOOT) -> int:
    state = probation.current_state(boot)
    on_probation = False
    sysroot: Sysroot | None = None
    if state.on_probation:
        sysroot = Sysroot(Path("/"))
        booted, default = _booted_and_default(sysroot)
        if booted.index != default.index:
            record = fall_back_for_good(sysroot)
            _say(f"deployment {record['deployment']} failed its boot ({record['reason']});"
                 f" rolled back to {booted.id} for good")  # fmt: skip
        else:
            on_probation = True
            _say(f"deployment {booted.id} boots on probation ({state.tries} more boots)")
    results = healthchecks.run_checks(settings.check_timeout)
    for result in results:
        _say(f"{result.label}: {'passed' if result.ok else 'FAILED'}")
        if not result.ok and result.output:
            for line in result.output.splitlines():
                _say(f"  {line}")
    failed = [r for r in results if r.required and not r.ok]
    if not failed:
        return 0
    sysroot = sysroot or Sysroot(Path("/"))
    booted, _ = _booted_and_default(sysroot)
    bootfailures.record_check_failure(sysroot.path, booted.osname, {
        "deployment": booted.id, "boot-id": BOOT_ID.read_text().strip(), "time": _now(),
        "check": failed[0].label, "output": failed[0].output,
    })  # fmt: skip
    if on_probation:
        _say_on_console(f"{failed[0].label} failed on probation: rebooting")
        run(["systemctl", "reboot", "--no-block"], what="systemctl reboot")
    return 1


def bless(boot: Path = BOOT) -> int:
    state = probation.current_state(boot)
    if not state.on_probation:
        return 0
    booted, default = _booted_and_default(Sysroot(Path("/")))
    if booted.index == default.index and probation.disarm(boot):
        _say(f"deployment {booted.id} booted well: it is the default for good")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apt-ostree-health", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["check", "bless"])
    args = parser.parse_args(argv)
    try:
        settings = load_health_settings()
    except ConfigError as e:
        _say(f"{e}; using the defaults")
        settings = HealthSettings()
    if not settings.enabled:
        return 0
    try:
        return check(settings) if args.action == "check" else bless()
    except AptOstreeError as e:
        _say(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
