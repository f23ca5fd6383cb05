"""Shared test setup: import apt_ostree from src/ and register the fixture modules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
    "tests.fixtures.daemon",
    "tests.fixtures.registry",
    "tests.fixtures.ocitrees",
]

# Fast tests first, so that a broken change fails within minutes (and `-x` stops
# there); the slow ones that compose real trees and boot VMs come last. The
# sort is stable: the tests of one module keep their file order.
_ORDER = ("tests/unit/", "tests/integration/", "tests/e2e/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((i for i, prefix in enumerate(_ORDER) if path.startswith(prefix)), 1)

    items.sort(key=rank)
