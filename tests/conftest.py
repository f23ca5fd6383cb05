"""Shared test setup: import apt_ostree from src/ and register the fixture modules."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent / "src", TESTS):
    # Prepend so that the tree under test wins over any installed copy.
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Fixture modules are plugins: their fixtures are visible to every test.
pytest_plugins = ["fixtures.aptrepo"]
