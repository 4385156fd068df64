"""The package version (one place; ``nerfstage.__version__`` and every report read it from here)."""

__version__ = "0.1.0"
