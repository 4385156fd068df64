"""Capture stage: footage or photos -> posed dataset (nerfstudio ``transforms.json``), and the dataset loader.

The names below are imported lazily on first use so that ``import nerfstage.capture`` stays cheap (numpy at
most; never torch or pycolmap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .convert import dataset_from_reconstruction, write_sparse_ply
    from ..core.geometry import Intrinsics, convert_camera_axes
    from .dataset import Dataset, Frame
    from .loader import load_dataset
    from .transforms import read_transforms, write_transforms

_EXPORTS = {
    "load_dataset": ".loader",
    "Dataset": ".dataset",
    "Frame": ".dataset",
    "Intrinsics": "..core.geometry",  # the foundation's camera type, exported here for dataset users
    "convert_camera_axes": "..core.geometry",
    "read_transforms": ".transforms",
    "write_transforms": ".transforms",
    "dataset_from_reconstruction": ".convert",
    "write_sparse_ply": ".convert",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
