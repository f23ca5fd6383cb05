"""daemon layer (see DESIGN.md)."""
