"""Capture stage: footage or photos -> posed dataset (nerfstudio ``transforms.json``), and the dataset loader.

The names below are imported lazily on first use so that ``import nerfstage.capture`` stays cheap (numpy at
most; never torch or pycolmap).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .convert import dataset_from_reconstruction, write_sparse_ply
    from .dataset import Dataset, Frame, Intrinsics, convert_camera_axes
    from .loader import load_dataset
    from .transforms import read_transforms, write_transforms

_EXPORTS = {
    "load_dataset": ".loader",
    "Dataset": ".dataset",
    "Frame": ".dataset",
    "Intrinsics": ".dataset",
    "convert_camera_axes": ".dataset",
    "read_transforms": ".transforms",
    "write_transforms": ".transforms",
    "dataset_from_reconstruction": ".convert",
    "write_sparse_ply": ".convert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
