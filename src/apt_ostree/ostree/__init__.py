"""Thin typed wrappers over libostree (through PyGObject).

Import `Gio`, `GLib` and `OSTree` from here: the GI version is pinned first.
"""

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree  # noqa: E402

__all__ = ["GLib", "Gio", "OSTree"]
