"""Photo-folder ingestion and the small image helpers the capture stage shares (orientation, resize, JPEG).

A folder of photos becomes ``out_dir/frame_00001.jpg, frame_00002.jpg, ...``: the photos in capture order
(``photo_order.py``: EXIF capture time when the photos carry it, else natural name order, ``IMG_2.jpg`` before
``IMG_10.jpg``), each turned upright from its EXIF orientation, shrunk so its
longest side is at most ``max_size`` (never enlarged) and written as JPEG quality 95, keeping the other EXIF
tags (camera make/model and focal length give COLMAP its focal-length prior). The same
``frame_NNNNN.jpg`` naming as video frames keeps every later step format-agnostic; ``ImageImport.name_map``
records which photo became which frame.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps
from rich.errors import LiveError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.errors import ConfigError, DatasetError
from .photo_order import PhotoOrder, order_photos

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
"""File extensions (lower case) taken as photos; matching is case-insensitive."""

JPEG_QUALITY = 95
"""Quality of every JPEG the capture stage writes."""

FRAME_NAME = "frame_{:05d}.jpg"
"""Name of the i-th written image (1-based), for video frames and photos alike."""

_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_SUB_IFD, _EXIF_PIXEL_X, _EXIF_PIXEL_Y = 0x8769, 0xA002, 0xA003
# Formats whose OpenCV decoder honours IMREAD_IGNORE_ORIENTATION (checked with OpenCV 5.0 in the tests).
_CV2_IGNORES_ORIENTATION = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
_READ_THREADS = 2


@dataclass(frozen=True)
class Orientation:
    """An axis-aligned image transform: optional transpose (swap x and y), then optional flips.

    Covers the 8 EXIF orientations and every display matrix whose rotation is a multiple of 90 degrees.
    """

    transpose: bool = False
    """Swap rows and columns first (``img[y, x] -> img[x, y]``)."""
    flip_rows: bool = False
    """Then reverse the row order (upside down)."""
    flip_cols: bool = False
    """Then reverse the column order (mirror left-right)."""

    def apply(self, image: np.ndarray) -> np.ndarray:  # [H, W, C] or [H, W] -> [H', W', C] contiguous
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of the given size after this transform."""
        return (height, width) if self.transpose else (width, height)


# EXIF orientation tag value -> transform that makes the stored pixels upright (as Pillow's exif_transpose).
EXIF_ORIENTATIONS: dict[int, Orientation] = {
    1: Orientation(),
    2: Orientation(flip_cols=True),
    3: Orientation(flip_rows=True, flip_cols=True),
    4: Orientation(flip_rows=True),
    5: Orientation(transpose=True),
    6: Orientation(transpose=True, flip_cols=True),  # stored rotated: turn 90 degrees clockwise
    7: Orientation(transpose=True, flip_rows=True, flip_cols=True),
    8: Orientation(transpose=True, flip_rows=True),  # turn 90 degrees counter-clockwise
}


@dataclass
class ImageImport:
    """What ``import_images`` wrote."""

    image_paths: list[Path]
    """Written images ``out_dir/frame_00001.jpg ...``, in the order of ``order``."""
    source_paths: list[Path]
    """The photo each written image came from (same order as ``image_paths``)."""
    size_per_image: list[tuple[int, int]]
    """(width, height) of each written image, after orientation and resizing."""
    name_map: dict[str, str] = field(default_factory=dict)
    """Original file name -> written file name (``"IMG_0042.JPG" -> "frame_00007.jpg"``)."""
    skipped: list[Path] = field(default_factory=list)
    """Files in the folder that are not photos by extension (or are hidden), left untouched."""
    warnings: list[str] = field(default_factory=list)
    """Things worth telling the user (e.g. mixed image sizes after resizing)."""
    order: PhotoOrder | None = None
    """How the photos were ordered (EXIF capture time or name) and why."""

    @property
    def frames_selected(self) -> int:
        """Number of written images (the same name as ``FrameSelection.frames_selected``)."""
        return len(self.image_paths)


def import_images(src_dir: Path, out_dir: Path, max_size: int = 1600, progress: bool = True) -> ImageImport:
    """Copy the photos of ``src_dir`` into ``out_dir`` as upright ``frame_NNNNN.jpg`` with longest side <= max_size.

    Raises DatasetError for a missing folder, a folder without photos, fewer than 2 photos, or an unreadable
    photo (naming it). ``out_dir`` is created; it is assumed to be empty.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    check_max_size(max_size)
    named, skipped = list_images(src_dir)
    order = order_photos(named)
    sources = order.paths
    if len(sources) < 2:
        raise DatasetError(f"{src_dir}: only 1 photo; need at least 2 (better: many overlapping views)")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [out_dir / FRAME_NAME.format(i + 1) for i in range(len(sources))]
    pool = ThreadPoolExecutor(_READ_THREADS)  # OpenCV decodes/encodes without holding the GIL
    try:
        jobs = pool.map(lambda pair: _convert_one(*pair, max_size), zip(sources, targets))
        sizes = list(track(jobs, len(sources), "import", progress))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    name_map = {s.name: t.name for s, t in zip(sources, targets)}
    result = ImageImport(targets, sources, sizes, name_map, skipped, order=order)
    if len(set(sizes)) > 1:
        result.warnings.append(
            f"{src_dir}: photos have {len(set(sizes))} different sizes after resizing; one shared camera "
            "cannot model them all (use photos from one camera and orientation)"
        )
    return result


def list_images(src_dir: Path) -> tuple[list[Path], list[Path]]:
    """(photos in natural name order, other files skipped) of a folder; not recursive; hidden files skipped."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        what = "is a file, not a folder" if src_dir.exists() else "does not exist"
        raise DatasetError(f"{src_dir}: image folder {what}; give a folder of photos (jpg/png/tif/bmp/webp)")
    images, skipped = [], []
    for path in src_dir.iterdir():
        is_image = path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()
        (images if is_image else skipped).append(path)
    if not images:
        raise DatasetError(
            f"{src_dir}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    return sorted(images, key=natural_key), sorted(skipped)


def natural_key(path: Path | str) -> tuple:
    """Sort key putting ``img2`` before ``img10`` and ``a.jpg`` before ``a9.jpg``.

    The stem is compared first, digit runs as numbers and the rest case-insensitively; then the extension.
    """
    path = Path(path)
    parts = re.split(r"(\d+)", path.stem.lower())
    stem = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)
    return stem, path.suffix.lower(), path.name


def read_image(path: Path) -> np.ndarray:  # -> [H, W, 3] uint8 BGR, upright
    """Read a photo as upright 8-bit BGR: EXIF orientation applied, 16-bit scaled down, alpha dropped.

    JPEG/PNG/WebP/BMP: OpenCV decodes the stored pixels (told to ignore the orientation, which it does for
    these) and the EXIF orientation read by Pillow is applied here. Everything else, and whatever OpenCV
    cannot decode, goes through Pillow + ``ImageOps.exif_transpose`` (OpenCV 5 half-applies or fails on
    rotated TIFFs, and Pillow's TIFF decoder applies the orientation itself while loading).
    """
    return _read_with_exif(Path(path))[0]


def _read_with_exif(path: Path) -> tuple[np.ndarray, object | None]:  # -> ([H, W, 3] BGR upright, PIL Exif)
    exif = _read_exif(path)
    if path.suffix.lower() in _CV2_IGNORES_ORIENTATION:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is not None and image.size:
            code = int(exif.get(_EXIF_ORIENTATION_TAG, 1) or 1) if exif else 1
            return EXIF_ORIENTATIONS.get(code, Orientation()).apply(image), exif
    return _pil_read_upright(path), exif


def resize_to_max_side(image: np.ndarray, max_size: int) -> np.ndarray:  # [H, W, C] -> [h, w, C]
    """Shrink so the longest side is at most ``max_size`` (aspect kept, INTER_AREA); never enlarge."""
    height, width = image.shape[:2]
    new_w, new_h = fit_size(width, height, max_size)
    if (new_w, new_h) == (width, height):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def fit_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(width, height) scaled down so max(width, height) <= max_size, aspect kept, never enlarged."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_jpeg(path: Path, bgr: np.ndarray, quality: int = JPEG_QUALITY, exif: bytes | None = None) -> None:
    """Write a [H, W, 3] uint8 BGR image as JPEG (with the given raw EXIF block, if any).

    Raises DatasetError if it cannot be written.
    """
    if exif:
        try:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            Image.fromarray(rgb).save(path, format="JPEG", quality=int(quality), exif=exif)
            return
        except (OSError, ValueError) as exc:  # e.g. an EXIF block over JPEG's 64 KiB segment limit
            log.debug("%s: writing without EXIF (%s)", path, exc)
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise DatasetError(f"{path}: could not write the JPEG (is the folder writable and the disk not full?)")


def _convert_one(source: Path, target: Path, max_size: int) -> tuple[int, int]:
    image, exif = _read_with_exif(source)
    image = resize_to_max_side(image, max_size)
    write_jpeg(target, image, exif=_upright_exif_bytes(exif, image.shape[1], image.shape[0]))
    return image.shape[1], image.shape[0]


def _read_exif(path: Path):  # -> PIL.Image.Exif | None
    """The EXIF block of an image file (header read only); None when absent or unreadable."""
    try:
        with Image.open(path) as pil:
            exif = pil.getexif()
    except Exception as exc:  # Pillow raises many types for files it does not know; OpenCV may still read them
        log.debug("no EXIF from %s: %s", path, exc)
        return None
    return exif if len(exif) else None


def _upright_exif_bytes(exif, width: int, height: int) -> bytes | None:
    """EXIF of the source for the written image: orientation 1 and the new pixel size; camera tags kept.

    Keeping make/model/focal length lets COLMAP start from the phone's focal length (a "prior").
    """
    if not exif:
        return None
    try:
        exif[_EXIF_ORIENTATION_TAG] = 1
        sub_ifd = exif.get_ifd(_EXIF_SUB_IFD)
        for tag, value in ((_EXIF_PIXEL_X, width), (_EXIF_PIXEL_Y, height)):
            if tag in sub_ifd:
                sub_ifd[tag] = value
        return exif.tobytes()
    except Exception as exc:  # a malformed EXIF block must not stop the import
        log.debug("dropping unwritable EXIF: %s", exc)
        return None


def _pil_read_upright(path: Path) -> np.ndarray:  # -> [H, W, 3] uint8 BGR, EXIF orientation applied
    try:
        with Image.open(path) as pil:
            pil.load()  # a TIFF applies (and drops) its orientation tag here; exif_transpose sees what is left
            image = _pil_to_bgr(ImageOps.exif_transpose(pil))
    except Exception as exc:  # truncated/corrupt files raise OSError, SyntaxError, ValueError, ...
        raise DatasetError(f"{path}: cannot read this image ({_short(exc)}); re-export it or remove it") from exc
    if image.size == 0:
        raise DatasetError(f"{path}: cannot read this image (it is empty); re-export it or remove it")
    return image


def _short(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _pil_to_bgr(pil) -> np.ndarray:  # -> [H, W, 3] uint8 BGR
    if pil.mode == "I" or pil.mode.startswith("I;16"):  # 16-bit grey: keep the top 8 bits
        grey = (np.clip(np.asarray(pil, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(pil.convert("RGB")), cv2.COLOR_RGB2BGR)


def check_max_size(max_size: int) -> None:
    """Raise ConfigError unless ``max_size`` is a usable longest image side."""
    if int(max_size) < 16:
        raise ConfigError(f"max_size={max_size}: the longest image side must be at least 16 pixels")


def track(items: Iterable, total: int | None, description: str, enabled: bool) -> Iterator:
    """Yield ``items`` while showing a rich progress bar (when enabled and no other live display is active)."""
    if not enabled:
        yield from items
        return

    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns)
    try:
        bar.start()
    except LiveError:  # the caller already shows a live display: go on without ours
        yield from items
        return
    try:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
    finally:
        bar.stop()
