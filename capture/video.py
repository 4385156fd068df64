"""Video I/O with PyAV (no ffmpeg binary needed): H.264 writing; decoding and sharpest-frame selection.

``extract_sharpest_frames`` splits a video into N equal windows of consecutive frames and keeps the sharpest
frame of each (variance of the Laplacian, see ``sharpness.py``), in ONE streaming decode pass that holds at most
one candidate frame: when a window ends, its winner is turned upright (display-matrix rotation of phone
videos), shrunk to ``max_size`` and written as ``out_dir/frame_00001.jpg ...`` (JPEG quality 95, time order).
When the container does not know its frame count (e.g. Matroska/WebM), the packets are counted first by
demuxing only (no decoding; a few milliseconds per minute of video).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, VideoError
from .images import FRAME_NAME, Orientation, check_max_size, resize_to_max_side, track, write_jpeg
from .sharpness import gray_sharpness

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".ts", ".3gp", ".mpg", ".mpeg", ".wmv"}
)
"""File extensions (lower case) taken as videos; matching is case-insensitive."""

# 8-bit planar YUV layouts whose first plane is the luma image (read without any conversion).
_LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns from the container and the first decoded frame."""

    width: int
    """Width of the upright picture (after the display rotation)."""
    height: int
    """Height of the upright picture (after the display rotation)."""
    fps: float
    """Average frame rate (0.0 when the container does not say)."""
    duration_s: float
    """Duration in seconds (0.0 when unknown)."""
    frame_count: int
    """Frame count from the container, else estimated as duration * fps (0 when neither is known)."""
    rotation_deg: int
    """Counter-clockwise rotation the display matrix asks for, rounded to 0/90/180/270."""
    codec: str
    """Decoder name, e.g. ``h264`` or ``hevc``."""


@dataclass
class FrameSelection:
    """What ``extract_sharpest_frames`` decoded and wrote."""

    frames_decoded: int
    """Frames decoded from the video."""
    frames_selected: int
    """Frames written (one per window; fewer only if the container over-stated its frame count)."""
    image_paths: list[Path]
    """Written images ``out_dir/frame_00001.jpg ...``, in time order."""
    source_indices: list[int]
    """Index of each kept frame in the decoded stream (0-based, increasing)."""
    sharpness: list[float]
    """Laplacian variance of each kept frame (on its luma, longest side ``SHARPNESS_MAX_SIDE``)."""
    rotation_deg: int
    """Counter-clockwise rotation applied from the display matrix (0/90/180/270)."""
    fps: float
    """Average frame rate of the video."""
    size: tuple[int, int]
    """(width, height) of the written images."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per step: ``count`` (frame counting, when needed), ``decode``, ``select`` (score + write)."""


def is_video_file(path: Path) -> bool:
    """True for an existing file whose extension is a video container (mp4/mov/m4v/avi/mkv/webm/...)."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def probe_video(path: Path) -> VideoInfo:
    """Read size, rate, duration, frame count and rotation of a video (decodes its first frame only)."""
    path = Path(path)
    with open_video(path) as (container, stream):
        first = next(decoded_frames(container, stream, path), None)
        if first is None:
            raise VideoError(f"{path}: the video has no decodable frames; re-export or re-record it")
        orientation, rotation = display_orientation(first)
        width, height = orientation.output_size(first.width, first.height)
        fps, duration = _fps(stream), _duration_s(container, stream)
        count = stream.frames if stream.frames > 0 else round(duration * fps)
        return VideoInfo(width, height, fps, duration, int(count), rotation, stream.codec_context.name)


def extract_sharpest_frames(
    video: Path, out_dir: Path, num_frames: int = 150, max_size: int = 1600, progress: bool = True
) -> FrameSelection:
    """Write the sharpest frame of each of ``num_frames`` equal windows of ``video`` to ``out_dir``.

    A video with fewer frames than ``num_frames`` keeps them all. Images are upright, longest side at most
    ``max_size`` (never enlarged), named ``frame_00001.jpg ...`` in time order; ``out_dir`` is created and
    assumed empty. Raises VideoError for a missing, unreadable or empty video and for fewer than 2 frames.
    """
    video, out_dir = Path(video), Path(out_dir)
    if int(num_frames) < 2:
        raise ConfigError(f"num_frames={num_frames}: need at least 2 frames for structure-from-motion")
    check_max_size(max_size)
    start = time.perf_counter()
    total = count_frames(video)
    seconds = {"count": time.perf_counter() - start}
    out_dir.mkdir(parents=True, exist_ok=True)
    selector = _SharpestPerWindow(out_dir, total, min(int(num_frames), total), max_size)
    start = time.perf_counter()
    with open_video(video) as (container, stream):
        fps = _fps(stream)
        frames = track(decoded_frames(container, stream, video), total, "decode/select", progress)
        for index, frame in enumerate(frames):
            selector.add(index, frame)
        selector.finish()
    seconds["select"] = selector.seconds
    seconds["decode"] = time.perf_counter() - start - selector.seconds
    return _checked(selector.result(fps, seconds), video)


def count_frames(path: Path) -> int:
    """Frame count from the container, else the number of video packets (demuxing only, no decoding)."""
    with open_video(path) as (container, stream):
        if stream.frames > 0:
            return int(stream.frames)
        count = 0
        try:
            for packet in container.demux(stream):
                count += packet.size > 0
        except _av_errors() as exc:
            log.warning("%s: stopped counting frames at a damaged packet (%s)", path, exc)
    if count == 0:
        raise VideoError(f"{path}: the video holds no frames (empty or damaged); re-export or re-record it")
    return count


@contextmanager
def open_video(path: Path) -> Iterator[tuple]:
    """Open ``path`` with PyAV and yield ``(container, first video stream)``; errors become VideoError."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a video file" if path.is_dir() else "does not exist"
        raise VideoError(f"{path}: {what}; give a video file (mp4/mov/m4v/avi/mkv/webm) or a folder of photos")
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (*_av_errors(), OSError) as exc:
        raise VideoError(
            f"{path}: not a readable video ({_short(exc)}); check it is a complete mp4/mov/mkv file or re-export it"
        ) from exc
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream (audio-only or not a video); give a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads
        yield container, stream
    finally:
        container.close()


def decoded_frames(container, stream, path: Path) -> Iterator:
    """Yield the decoded ``av.VideoFrame``s of ``stream``; damaged packets are skipped with a log warning."""
    packets = container.demux(stream)
    damaged = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except _av_errors() as exc:  # damaged or truncated container: keep what was decoded so far
            log.warning("%s: stopped reading at a damaged part of the file (%s)", path, _short(exc))
            break
        try:
            frames = packet.decode()  # the final empty packet flushes the decoder
        except _av_errors():
            damaged += 1
            continue
        yield from frames
    if damaged:
        log.warning("%s: skipped %d damaged packet(s)", path, damaged)


def display_orientation(frame) -> tuple[Orientation, int]:
    """(transform that makes the frame upright, counter-clockwise rotation in degrees) from its display matrix.

    FFmpeg's display matrix maps stored pixel (x, y) to displayed ``(a*x + c*y, b*x + d*y)`` (+ offsets),
    with ``[a, b, _, c, d, ...]`` its first entries; phones store portrait video as landscape pixels plus a
    90-degree matrix. Rotations are snapped to multiples of 90 degrees; mirror flips are honoured too.
    """
    matrix = _display_matrix(frame)
    if matrix is None:
        return Orientation(), 0
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    if abs(b) > abs(a):  # x and y swap: displayed x' = c*y, y' = b*x
        orientation = Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    else:
        orientation = Orientation(flip_rows=d < 0, flip_cols=a < 0)
    return orientation, int(round(frame.rotation / 90.0)) * 90 % 360


def _display_matrix(frame) -> np.ndarray | None:  # -> [9] int32 (16.16 fixed point; last column 2.30)
    from av.sidedata.sidedata import Type  # heavy: PyAV/FFmpeg (only when video is read or written)

    side_data = frame.side_data.get(Type.DISPLAYMATRIX)  # a Mapping keyed by Type (PyAV >= 18.1.1 iterates keys)
    if side_data is None:
        return None
    return np.frombuffer(bytes(side_data), dtype=np.int32)[:9]


def frame_sharpness(frame) -> float:
    """Sharpness score of a decoded frame: Laplacian variance of its luma at the working size."""
    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]  # the Y plane, rows padded to line_size
        luma = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
    else:
        luma = frame.to_ndarray(format="gray")
    return gray_sharpness(luma)


class _SharpestPerWindow:
    """Streaming selector: frame ``i`` of ``total`` falls in window ``i * windows // total``.

    Holds only the best frame so far of the current window; writes it when the next window starts.
    """

    def __init__(self, out_dir: Path, total: int, windows: int, max_size: int):
        self.out_dir, self.total, self.windows, self.max_size = out_dir, total, windows, max_size
        self.orientation, self.rotation = Orientation(), 0
        self.window, self.best = -1, None  # best: (score, index, frame)
        self.paths: list[Path] = []
        self.indices: list[int] = []
        self.scores: list[float] = []
        self.decoded, self.size, self.seconds = 0, (0, 0), 0.0

    def add(self, index: int, frame) -> None:
        start = time.perf_counter()
        if self.decoded == 0:
            self.orientation, self.rotation = display_orientation(frame)
        self.decoded = index + 1
        window = min(index * self.windows // self.total, self.windows - 1)  # a too-small count piles up at the end
        if window != self.window:
            self.flush()
            self.window = window
        score = frame_sharpness(frame)
        if self.best is None or score > self.best[0]:
            self.best = (score, index, frame)
        self.seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Write the last window's winner."""
        start = time.perf_counter()
        self.flush()
        self.seconds += time.perf_counter() - start

    def flush(self) -> None:
        """Write the current window's winner (if any)."""
        if self.best is None:
            return
        score, index, frame = self.best
        self.best = None
        bgr = self.orientation.apply(resize_to_max_side(frame.to_ndarray(format="bgr24"), self.max_size))
        path = self.out_dir / FRAME_NAME.format(len(self.paths) + 1)
        write_jpeg(path, bgr)
        self.paths.append(path)
        self.indices.append(index)
        self.scores.append(score)
        self.size = (bgr.shape[1], bgr.shape[0])

    def result(self, fps: float, seconds: dict[str, float]) -> FrameSelection:
        return FrameSelection(
            self.decoded, len(self.paths), self.paths, self.indices, self.scores, self.rotation, fps, self.size, seconds
        )


def _checked(selection: FrameSelection, video: Path) -> FrameSelection:
    if selection.frames_decoded == 0:
        raise VideoError(f"{video}: no frame could be decoded (empty or damaged video); re-export or re-record it")
    if selection.frames_selected < 2:
        raise VideoError(
            f"{video}: only {selection.frames_selected} usable frame ({selection.frames_decoded} decoded); "
            "need at least 2 - record a longer video"
        )
    return selection


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _duration_s(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        import av  # heavy: PyAV/FFmpeg (only when video is read or written)

        return container.duration / av.time_base
    return 0.0


def _av_errors() -> tuple[type[Exception], ...]:
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

    return (av.FFmpegError,)


def _short(exc: Exception) -> str:
    """The reason of an exception in a few words (PyAV's ``strerror`` has no errno and no repeated file name)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],  # each [H, W, 3] uint8 RGB
    fps: float = 30.0,
    crf: int = 18,
) -> int:
    """Write RGB uint8 frames as H.264 MP4 (yuv420p) atomically: a temp file renamed into place.

    Width and height must be even (yuv420p). Returns the number of frames written.
    """
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

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
    height, width = int(shape[0]), int(shape[1])
    if height % 2 or width % 2 or len(shape) != 3 or shape[2] != 3:
        raise VideoError(f"frames must be [H, W, 3] with even H and W for H.264 yuv420p, got {tuple(shape)}")
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": str(crf), "preset": "medium"}
    return stream
