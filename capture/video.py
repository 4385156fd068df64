"""Video I/O with PyAV (no ffmpeg binary needed): H.264 writing; decoding and frame selection."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import VideoError


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],  # each [H, W, 3] uint8 RGB
    fps: float = 30.0,
    crf: int = 18,
) -> int:
    """Write RGB uint8 frames as H.264 MP4 (yuv420p) atomically: a temp file renamed into place.

    Width and height must be even (yuv420p). Returns the number of frames written.
    """
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    count = 0
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = _open_h264_stream(container, frame.shape, fps, crf)
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                container.mux(stream.encode(video_frame))
                count += 1
            if stream is not None:
                container.mux(stream.encode(None))
        if count == 0:
            raise VideoError(f"{path}: no frames to write")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _open_h264_stream(container, shape: tuple[int, ...], fps: float, crf: int):
    from fractions import Fraction

    height, width = int(shape[0]), int(shape[1])
    if height % 2 or width % 2 or len(shape) != 3 or shape[2] != 3:
        raise VideoError(f"frames must be [H, W, 3] with even H and W for H.264 yuv420p, got {tuple(shape)}")
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": str(crf), "preset": "medium"}
    return stream
