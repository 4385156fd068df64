"""Camera paths."""
