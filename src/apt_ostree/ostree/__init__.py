"""Thin typed wrappers over libostree (through PyGObject)."""
