"""The order a folder of photos goes into SfM: by EXIF capture time when the photos carry it, else by name.

Sequential matching and the loop pass assume consecutive frames overlap, so the order matters. A phone writes
``DateTimeOriginal`` (seconds) and usually ``SubSecTimeOriginal`` (fraction) into every photo; names are only
a hint (``IMG_0042`` counts up, but ``4_10.jpg`` sorts before ``4_2.jpg`` as text, and renamed or merged folders
lose the order entirely). The capture time is used when at least ``EXIF_MIN_FRACTION`` of the photos have one
and at least that fraction of those times are distinct (a burst written within one second without sub-second
tags cannot be ordered by time); photos without a time then follow in name order. Otherwise the natural name
order (``img2`` before ``img10``) is used. Whether the result really is a walk is judged later, from the images
(``sfm_pairs.analyse_order``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from PIL import Image

log = logging.getLogger(__name__)

EXIF_MIN_FRACTION = 0.9
"""Capture times order the photos when at least this fraction have one and this fraction of them are distinct."""

_EXIF_SUB_IFD = 0x8769
_DATETIME_ORIGINAL, _SUBSEC_ORIGINAL = 0x9003, 0x9291

OrderSource = Literal["exif_time", "name"]


@dataclass
class PhotoOrder:
    """The order chosen for a photo folder and why."""

    paths: list[Path]
    """The photos in the order they become frame_00001.jpg, frame_00002.jpg, ..."""
    source: OrderSource
    """``exif_time`` (EXIF capture time, ties and photos without one by name) or ``name`` (natural name order)."""
    with_time: int
    """Photos carrying an EXIF capture time."""
    distinct_times: int
    """Distinct capture times among them."""

    def describe(self) -> dict:
        """The report fields (``capture_report.json`` ``ordering``)."""
        why = (f"{self.with_time} of {len(self.paths)} photos carry an EXIF capture time, "
               f"{self.distinct_times} distinct")
        return {"source": self.source, "photos_with_time": self.with_time, "distinct_times": self.distinct_times,
                "reason": why + (" (needs >= " f"{EXIF_MIN_FRACTION:.0%} of both)" if self.source == "name" else "")}


def order_photos(paths: list[Path]) -> PhotoOrder:
    """Order ``paths`` (given in natural name order) by EXIF capture time when usable (see module docstring)."""
    times = [capture_time(path) for path in paths]
    known = [t for t in times if t is not None]
    distinct = len(set(known))
    usable = len(known) >= EXIF_MIN_FRACTION * len(paths) and distinct >= EXIF_MIN_FRACTION * len(known)
    if not usable:
        return PhotoOrder(list(paths), "name", len(known), distinct)
    rank = {path: i for i, path in enumerate(paths)}  # name order breaks ties and places photos without a time
    ordered = sorted(paths, key=lambda p: (times[rank[p]] is None, times[rank[p]] or 0.0, rank[p]))
    return PhotoOrder(ordered, "exif_time", len(known), distinct)


def capture_time(path: Path) -> float | None:
    """Seconds since the epoch of ``DateTimeOriginal`` + ``SubSecTimeOriginal`` (local time, as written by the
    camera; only differences matter); None when the photo has no readable capture time."""
    try:
        with Image.open(path) as pil:
            sub_ifd = pil.getexif().get_ifd(_EXIF_SUB_IFD)
    except Exception as exc:  # Pillow raises many types for files it cannot parse; the time is optional
        log.debug("no EXIF time from %s: %s", path, exc)
        return None
    stamp = sub_ifd.get(_DATETIME_ORIGINAL)
    if not isinstance(stamp, str):
        return None
    try:
        seconds = datetime.strptime(stamp.strip("\x00 "), "%Y:%m:%d %H:%M:%S").timestamp()
    except ValueError:
        return None
    return seconds + _subsec(sub_ifd.get(_SUBSEC_ORIGINAL))


def _subsec(value) -> float:
    """``SubSecTimeOriginal`` ("123" = 0.123 s) as seconds; 0 when absent or malformed."""
    digits = str(value or "").strip("\x00 ")
    return float(f"0.{digits}") if digits.isdigit() else 0.0
