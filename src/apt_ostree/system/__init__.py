"""system layer (see DESIGN.md)."""
