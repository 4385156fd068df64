"""Hash-grid encodings: pure-torch reference plus optional fast backends."""
