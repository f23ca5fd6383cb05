"""Boot counting in the generated GRUB menu: a new deployment boots on probation.

Debian's GRUB has no `increment`/`decrement` commands, so the counter is a
string that GRUB steps down with a chain of string compares, one branch per
state (`state_table`). Two variables in GRUB's environment block:

- `apt_ostree_probation`: the token of the menu the probation was armed for.
  Every generated menu carries a fresh random token (`set apt_ostree_menu=`);
  a counter armed for another menu (a power cut before libostree's swap of
  /boot/loader, or a later rollback that rewrote the menu) is ignored.
- `apt_ostree_tries`: boots the new deployment (menu entry 0) has left.

At boot, with a matching token: `N..1` -> write `N-1`, boot entry 0 with
`FAIL_FAST_KARGS`; `0` -> boot entry 1 (the previous deployment), write
nothing. Anything else: boot entry 0 and write nothing, so a machine that is
not on probation gets no GRUB write at all. Linux clears the counter when the
new deployment's boot is good (apt_ostree.system.health).

The counter is armed (`arm`) by the generator when it runs inside
ostree-finalize-staged.service (the drop-in sets `ARM_ENV`), i.e. for every
staged deployment, before libostree swaps the menu in.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.boot import grubenv
from apt_ostree.settings import MAX_BOOT_ATTEMPTS

TOKEN_VAR = "apt_ostree_probation"
TRIES_VAR = "apt_ostree_tries"
MENU_VAR = "apt_ostree_menu"
KARGS_VAR = "apt_ostree_kargs"
ARM_ENV = "APT_OSTREE_ARM_PROBATION"
# A boot on probation must end in a reboot rather than wait for a human at a
# shell: a kernel panic, dracut's emergency (no root filesystem), PID 1 crashing.
# rd.timeout: Debian 13's dracut (systemd in the initramfs, no initqueue for the
# root device) otherwise waits for a missing root device forever; Debian 12's
# gives up after rd.retry (180 s).
FAIL_FAST_KARGS = "panic=10 rd.shell=0 rd.emergency=reboot rd.timeout=180 systemd.crash_reboot=1"
# Relative to the /boot filesystem.
MENU = Path("loader/grub.cfg")


@dataclass(frozen=True)
class Step:
    """What GRUB does when it finds `tries` with the menu's token."""

    tries: str
    writes: str | None  # the value saved back; None: no write
    entry: int  # the menu entry booted
    fail_fast: bool  # FAIL_FAST_KARGS on entry 0's command line


def state_table(max_attempts: int = MAX_BOOT_ATTEMPTS) -> list[Step]:
    steps = [Step("0", None, 1, False)]
    steps += [Step(str(n), str(n - 1), 0, True) for n in range(1, max_attempts + 1)]
    return steps


NOT_ON_PROBATION = Step("", None, 0, False)


def next_boot(env: dict[str, str], token: str) -> Step:
    """What the menu with `token` does with the environment block `env`."""
    if env.get(TOKEN_VAR) != token or TOKEN_VAR not in env:
        return NOT_ON_PROBATION
    tries = env.get(TRIES_VAR)
    return next((s for s in state_table() if s.tries == tries), NOT_ON_PROBATION)


def new_token() -> str:
    return secrets.token_hex(8)


def grub_script(token: str) -> str:
    """The GRUB commands that apply the state table (after `set default=0`)."""
    lines = [
        "# Boot counting (docs/health.md): a new deployment boots on probation.",
        f"set {MENU_VAR}={token}",
        f'set {KARGS_VAR}=""',
        f"export {KARGS_VAR}",
        'if [ -f "$prefix/grubenv" ]; then',
        f"  if load_env {TOKEN_VAR} {TRIES_VAR}; then",
        f'    if [ "${TOKEN_VAR}" = "${MENU_VAR}" ]; then',
    ]
    for i, step in enumerate(state_table()):
        keyword = "if" if i == 0 else "elif"
        lines.append(f'      {keyword} [ "${TRIES_VAR}" = "{step.tries}" ]; then')
        if step.writes is not None:
            lines.append(f'        set {TRIES_VAR}="{step.writes}"')
            lines.append(f"        save_env {TRIES_VAR}")
        if step.entry != 0:
            lines.append(f"        set default={step.entry}")
        if step.fail_fast:
            lines.append(f'        set {KARGS_VAR}="{FAIL_FAST_KARGS}"')
    lines += ["      fi", "    fi", "  fi", "fi"]
    return "\n".join(lines) + "\n"


def menu_token(menu_text: str) -> str | None:
    match = re.search(rf"^set {MENU_VAR}=(\S+)$", menu_text, re.MULTILINE)
    return match.group(1) if match else None


def env_path(boot: Path) -> Path:
    return boot / grubenv.RELATIVE_PATH


def arm(boot: Path, token: str, attempts: int) -> None:
    """Put entry 0 of the menu with `token` on probation for `attempts` boots."""
    grubenv.update(env_path(boot), {TOKEN_VAR: token, TRIES_VAR: str(attempts)})


def disarm(boot: Path) -> bool:
    """End the probation (the one write of a good boot); False if there was none."""
    path = env_path(boot)
    if TOKEN_VAR not in grubenv.read(path):
        return False
    return grubenv.update(path, {}, unset=(TOKEN_VAR, TRIES_VAR))


@dataclass(frozen=True)
class BootState:
    """What GRUB did at this boot, as far as its environment block tells."""

    step: Step
    tries: str | None  # the counter now (after GRUB's write)

    @property
    def on_probation(self) -> bool:
        return self.step is not NOT_ON_PROBATION


def current_state(boot: Path) -> BootState:
    """The probation state of the active menu (`/boot/loader/grub.cfg`).

    Read after GRUB's write: `tries` is what the next boot will see, so entry 0
    was booted on probation when it is `0..N-1`, entry 1 as fallback when `0`
    and the booted deployment is not the default one."""
    try:
        token = menu_token((boot / MENU).read_text())
        env = grubenv.read(env_path(boot))
    except (OSError, grubenv.GrubEnvError):
        return BootState(NOT_ON_PROBATION, None)
    if token is None:
        return BootState(NOT_ON_PROBATION, None)
    return BootState(next_boot(env, token), env.get(TRIES_VAR))
