"""`db list|diff|version`: packages from commit metadata, no checkout."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    pass
