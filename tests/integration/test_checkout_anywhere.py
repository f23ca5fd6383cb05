"""The suite does not depend on where the checkout lies.

A user's or a CI's checkout may be anywhere: under /var (which some tests
replace inside a sandbox), under a directory whose name has spaces, or on a
read-only filesystem with build outputs elsewhere. A representative subset of
the suite (unit tests, the CLI on a sysroot, the scripts in data/) runs again
from a read-only copy of this checkout at `/var/tmp/.../home/user with space/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
SUBSET = [
    "tests/unit",
    "tests/integration/test_status.py",
    "tests/integration/test_kargs.py",
]
# Build outputs and caches that a checkout would otherwise hold.
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", "*.egg-info",
                                 ".pytest_cache", ".mypy_cache", ".ruff_cache")  # fmt: skip


@pytest.fixture
def readonly_checkout() -> Iterator[Path]:
    """A copy of the checkout, mounted read-only, under /var/tmp with spaces in its path."""
    parent = Path(tempfile.mkdtemp(prefix="apt-ostree-checkout-", dir="/var/tmp"))
    copy = parent / "home/user with space/apt-ostree"
    shutil.copytree(TOP, copy, ignore=IGNORED, symlinks=True)
    subprocess.run(["mount", "--bind", copy, copy], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", copy, copy], check=True)
        yield copy
    finally:
        # Lazily: in one full run a plain umount failed (the mount was still busy) and
        # the read-only copy stayed mounted under /var/tmp.
        subprocess.run(["umount", "--lazy", copy], check=False)
        shutil.rmtree(parent, ignore_errors=True)


def test_a_subset_of_the_suite_passes_from_a_readonly_checkout_with_spaces_under_var(
    readonly_checkout: Path, tmp_path: Path
) -> None:
    probe = readonly_checkout / "probe"
    with pytest.raises(OSError):
        probe.write_text("the copy must be read-only")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--basetemp", tmp_path / "basetemp", "-m", "not slow", *SUBSET],
        cwd=readonly_checkout, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    tail = "\n".join(proc.stdout.splitlines()[-25:])
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    assert " passed" in tail and "failed" not in tail and "error" not in tail, tail
