"""The health checks of a boot: executables in health.d, as greenboot's check/ dirs.

`/usr/lib/apt-ostree/health.d/{required,wanted}.d/` (shipped by packages) and
`/etc/apt-ostree/health.d/{required,wanted}.d/` (the administrator's). A name in
/etc replaces the same name in /usr/lib; a link to /dev/null there masks it.
They run in name order, each with a timeout; a failed `wanted` check is logged,
a failed `required` one makes the boot bad (docs/health.md).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECK_DIRS = (Path("/usr/lib/apt-ostree/health.d"), Path("/etc/apt-ostree/health.d"))
KINDS = ("required", "wanted")
# What a record keeps of a failing check's output: its end says why.
OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class CheckResult:
    name: str
    required: bool
    ok: bool
    output: str

    @property
    def label(self) -> str:
        return f"{'required' if self.required else 'wanted'} check {self.name}"


def find_checks(kind: str, dirs: tuple[Path, ...] = CHECK_DIRS) -> list[Path]:
    """The checks of `kind`, in name order, later directories overriding earlier ones."""
    found: dict[str, Path] = {}
    for top in dirs:
        d = top / f"{kind}.d"
        if d.is_dir():
            for path in d.iterdir():
                found[path.name] = path
    return [
        found[name] for name in sorted(found)
        if found[name].resolve() != Path("/dev/null")
        and found[name].is_file() and os.access(found[name], os.X_OK)
    ]  # fmt: skip


def run_check(path: Path, *, required: bool, timeout: int) -> CheckResult:
    try:
        proc = subprocess.run([os.fspath(path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=timeout, check=False, start_new_session=True)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        out = e.output.decode(errors="replace") if isinstance(e.output, bytes) else e.output or ""
        return CheckResult(path.name, required, False, f"{out}timed out after {timeout}s".strip())
    except OSError as e:
        return CheckResult(path.name, required, False, f"cannot run: {e.strerror}")
    output = proc.stdout.strip()[-OUTPUT_TAIL:]
    if proc.returncode != 0:
        output = f"{output}\nexit status {proc.returncode}".strip()
    return CheckResult(path.name, required, proc.returncode == 0, output)


def run_checks(timeout: int, dirs: tuple[Path, ...] = CHECK_DIRS) -> list[CheckResult]:
    """Every check, required ones first; all run even after a failure (for the log)."""
    return [
        run_check(path, required=kind == "required", timeout=timeout)
        for kind in KINDS
        for path in find_checks(kind, dirs)
    ]
