"""The one entry point that reads any supported dataset: :func:`load_dataset`.

Detection, in this order, for a folder ``P``:

1. ``P/transforms.json`` -> nerfstudio or instant-ngp (rule in :mod:`.transforms`: ``camera_model`` or
   ``applied_transform`` present -> nerfstudio, else instant-ngp);
2. ``P/transforms_train.json`` -> Blender;
3. ``P`` itself is a COLMAP model (``cameras`` + ``images`` .bin/.txt) -> COLMAP;
4. ``P/sparse/0`` or ``P/colmap/sparse/0`` is a COLMAP model -> COLMAP, images from ``images`` or ``P/images``.

A JSON file is read by its name: ``transforms_{train,val,test}.json`` -> Blender (its folder), any other
``*.json`` -> nerfstudio / instant-ngp.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import DatasetError
from .convert import is_colmap_model, read_blender, read_colmap
from .dataset import Dataset
from .transforms import read_transforms

_LOOKED_FOR = (
    "transforms.json, transforms_train.json, a COLMAP model (cameras/images .bin or .txt), "
    "sparse/0 or colmap/sparse/0"
)


def _load_json_file(path: Path) -> Dataset:
    if path.name in {f"transforms_{s}.json" for s in ("train", "val", "test")}:
        return read_blender(path.parent)
    return read_transforms(path)


def _colmap_in(folder: Path, images: Path | None) -> Dataset | None:
    if is_colmap_model(folder):
        return read_colmap(folder, images)
    if is_colmap_model(folder / "sparse" / "0"):
        return read_colmap(folder / "sparse" / "0", images or folder / "images")
    if is_colmap_model(folder / "colmap" / "sparse" / "0"):
        return read_colmap(folder / "colmap" / "sparse" / "0", images or folder / "images")
    return None


def load_dataset(path: Path, images: Path | None = None) -> Dataset:
    """Read the dataset at ``path`` (a folder or a JSON file), whatever its format (see the module docstring).

    ``images`` is the images folder of a COLMAP model (ignored by the JSON formats). Raises
    :class:`~nerfstage.errors.DatasetError` with a one-line message naming the file for anything unusable.
    """
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found (no such file or folder)")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise DatasetError(f"{path}: not a dataset; expected a folder or a transforms .json file")
        return _load_json_file(path)
    if (path / "transforms.json").is_file():
        return read_transforms(path / "transforms.json")
    if (path / "transforms_train.json").is_file():
        return read_blender(path)
    dataset = _colmap_in(path, Path(os.path.abspath(images)) if images is not None else None)
    if dataset is None:
        raise DatasetError(f"{path}: no dataset recognised; looked for {_LOOKED_FOR}")
    return dataset


def as_dataset(dataset: Dataset | Path | str) -> Dataset:
    """``dataset`` as is when it is a Dataset already, else :func:`load_dataset` of that path."""
    return dataset if isinstance(dataset, Dataset) else load_dataset(Path(dataset))
