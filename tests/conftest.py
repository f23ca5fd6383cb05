"""Shared test setup: import apt_ostree from src/ and register the fixture modules."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Prepend so that the tree under test wins over any installed copy; the
# project root makes fixture modules importable as `tests.fixtures.*`.
for path in (ROOT, ROOT / "src"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Fixture modules are plugins: their fixtures are visible to every test.
pytest_plugins = [
    "tests.fixtures.aptrepo",
    "tests.fixtures.sysroot",
    "tests.fixtures.httprepo",
    "tests.fixtures.debianbase",
    "tests.fixtures.layerpkgs",
    "tests.fixtures.selfdeb",
]
