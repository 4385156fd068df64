"""Output writers of the render stage: H.264 MP4, PNG (sRGB 8-bit), EXR (scene-linear half/float), NPY depth.

Every file is written atomically: to a hidden temp name in the same folder (``.name.partial.ext``), renamed onto
the final name only when complete, so a crash or an error never leaves a partial file under the final name.
``FrameSequenceWriter`` numbers frames ``frame_00001.png ...`` and, with ``resume=True``, skips frames already on
disk that read back whole at the right size (a truncated frame is redone).

Colour: these writers take PNG/MP4 frames as sRGB-encoded values and EXR frames as scene-linear values
(linear sRGB / Rec.709 primaries, D65), which EXR declares with a ``chromaticities`` header attribute. The
radiance field predicts sRGB-encoded colour (it is trained on sRGB images, as in nerfstudio); the one place that
turns its output into what each format takes is ``nerfstage.render.pipeline.encode_rgb``, using the transfer
functions below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..core.errors import ConfigError, InputError, OutputExistsError
from .spherical import add_spherical_metadata

FrameKind = Literal["png", "exr", "npy"]
FRAME_KINDS: tuple[str, ...] = ("png", "exr", "npy")
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
"""(red x y, green x y, blue x y, white x y) of linear sRGB / Rec.709 with a D65 white point."""


def prepare_output(path: Path, overwrite: bool = False) -> Path:
    """Check ``path`` may be written, create its folder, and return the temp name to write first.

    Raises OutputExistsError when ``path`` exists and ``overwrite`` is False, InputError when it is a folder
    or its folder cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it or choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create its folder ({exc.strerror or exc}); choose a writable place") from exc
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def commit_output(tmp: Path, path: Path) -> None:
    """Rename the finished temp file onto its final name (atomic on one file system)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc}); check the folder is writable") from exc


@contextmanager
def atomic_output(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on normal exit it is renamed onto ``path``, on error removed."""
    tmp = prepare_output(path, overwrite)
    try:
        yield tmp
        commit_output(tmp, Path(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc}); check the folder is writable") from exc
    finally:
        tmp.unlink(missing_ok=True)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> sRGB-encoded values in [0, 1] (IEC 61966-2-1 piecewise curve; clipped first)."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """Inverse of ``linear_to_srgb`` on [0, 1]."""
    x = np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def to_srgb8(linear_rgb: np.ndarray) -> np.ndarray:
    """Scene-linear RGB [H, W, 3] (float) -> 8-bit sRGB (rounded); a 4th (alpha) channel stays linear."""
    image = np.asarray(linear_rgb, dtype=np.float32)
    encoded = linear_to_srgb(image[..., :3])
    if image.ndim == 3 and image.shape[-1] == 4:
        encoded = np.concatenate([encoded, np.clip(image[..., 3:], 0.0, 1.0)], axis=-1)
    return np.round(encoded * 255.0).astype(np.uint8)


def write_png(path: Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write a uint8/uint16 image [H, W] (grey), [H, W, 3] (RGB) or [H, W, 4] (RGBA) as PNG, atomically.

    Float images are taken as scene-linear RGB(A) and encoded with ``to_srgb8``.
    """
    image = np.asarray(image)
    if image.dtype.kind == "f":
        image = to_srgb8(image)
    channels_ok = image.ndim == 2 or image.ndim == 3 and image.shape[2] in (1, 3, 4)
    if image.dtype not in (np.uint8, np.uint16) or not channels_ok:
        raise ConfigError(
            f"{path}: PNG needs uint8/uint16 [H, W], [H, W, 3] or [H, W, 4], got {image.dtype} {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    with atomic_output(path, overwrite) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise InputError(f"{path}: could not write the PNG (is the folder writable and the disk not full?)")
    return Path(path)


def exr_channel_names(num_channels: int) -> tuple[str, ...]:
    """EXR channel names of an image with 1 (depth Z), 3 (RGB) or 4 (RGBA) channels."""
    names = {1: ("Z",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}
    if num_channels not in names:
        raise ConfigError(f"EXR images need 1, 3 or 4 channels, got {num_channels}")
    return names[num_channels]


def write_exr(
    path: Path,
    image: np.ndarray,  # [H, W] or [H, W, C], scene-linear float
    half: bool = False,
    channel_names: tuple[str, ...] | None = None,
    envmap: Literal["latlong", "cube"] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a scene-linear image as a ZIP-compressed EXR (float32, or half with ``half=True``), atomically.

    Channels are named R G B (A), or Z for a single-channel image (depth), unless ``channel_names`` says
    otherwise. The header carries Rec.709/D65 ``chromaticities`` and, for panoramas, ``envmap``.
    """
    import OpenEXR  # heavy: OpenEXR (only when EXR files are read or written)

    image = np.asarray(image, dtype=np.float32)
    planes = image[..., None] if image.ndim == 2 else image
    names = channel_names or exr_channel_names(planes.shape[2])
    if len(names) != planes.shape[2] or planes.ndim != 3:
        raise ConfigError(f"{path}: {len(names)} channel names for an image of shape {image.shape}")
    dtype = np.float16 if half else np.float32
    channels = {name: np.ascontiguousarray(planes[..., i].astype(dtype)) for i, name in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "chromaticities": REC709_CHROMATICITIES}
    if envmap is not None:
        header["envmap"] = OpenEXR.ENVMAP_LATLONG if envmap == "latlong" else OpenEXR.ENVMAP_CUBE
    with atomic_output(path, overwrite) as tmp:
        OpenEXR.File(header, channels).write(str(tmp))
    return Path(path)


def read_exr(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(channels by name -> [H, W] arrays, header dict) of an EXR file; InputError if unreadable."""
    import OpenEXR  # heavy: OpenEXR (only when EXR files are read or written)

    try:
        exr = OpenEXR.File(str(path), separate_channels=True)
        channels = {name: channel.pixels for name, channel in exr.channels().items()}
        return channels, dict(exr.header())
    except Exception as exc:  # OpenEXR raises plain RuntimeError/Exception on damaged files
        raise InputError(f"{path}: not a readable EXR file ({exc})") from exc


def write_npy(path: Path, array: np.ndarray, overwrite: bool = False) -> Path:
    """Save an array (e.g. raw float32 depth [H, W]) as .npy, atomically."""
    with atomic_output(path, overwrite) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array))
    return Path(path)


def is_valid_frame(path: Path, width: int, height: int) -> bool:
    """True when ``path`` is a complete PNG/EXR/NPY image of ``height`` x ``width`` pixels."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            if not path.read_bytes()[-12:].startswith(b"\x00\x00\x00\x00IEND"):
                return False
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            return image is not None and image.shape[:2] == (height, width)
        if suffix == ".exr":
            channels, _ = read_exr(path)
            return bool(channels) and all(c.shape == (height, width) for c in channels.values())
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).shape[:2] == (height, width)
    except (InputError, ValueError, OSError, EOFError):
        return False
    return False


class FrameSequenceWriter:
    """Numbered frames in a folder (``frame_00001.png`` ...), atomically written, resumable."""

    def __init__(
        self,
        directory: Path,
        kind: FrameKind = "png",
        width: int | None = None,
        height: int | None = None,
        resume: bool = False,
        overwrite: bool = False,
        prefix: str = "frame",
        first_number: int = 1,
        half: bool = False,
        envmap: Literal["latlong", "cube"] | None = None,
        face_suffixes: tuple[str, ...] | None = None,
    ):
        """``width``/``height`` are checked on resume; ``face_suffixes`` (e.g. cubemap ``px nx ...``) writes
        each frame as one file per face, ``frame_00001_px.png``; ``half``/``envmap`` apply to EXR."""
        if kind not in FRAME_KINDS:
            raise ConfigError(f"frame format {kind!r}: expected one of {', '.join(FRAME_KINDS)}")
        self.directory, self.kind, self.width, self.height = Path(directory), kind, width, height
        self.resume, self.overwrite, self.prefix, self.first_number = resume, overwrite, prefix, first_number
        self.half, self.envmap, self.face_suffixes = half, envmap, face_suffixes
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(f"{self.directory}: exists and is not a folder; give a folder for the frames")
        if not (resume or overwrite) and any(self.directory.glob(f"{prefix}_*.{kind}")):
            raise OutputExistsError(
                f"{self.directory}: already holds {prefix}_*.{kind} frames; pass --resume or --overwrite"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.directory}: cannot create the folder ({exc.strerror or exc})") from exc

    def paths(self, index: int) -> list[Path]:
        """File(s) of frame ``index`` (0-based; named from ``first_number``)."""
        stem = f"{self.prefix}_{index + self.first_number:05d}"
        if self.face_suffixes:
            return [self.directory / f"{stem}_{suffix}.{self.kind}" for suffix in self.face_suffixes]
        return [self.directory / f"{stem}.{self.kind}"]

    def is_done(self, index: int) -> bool:
        """Whether frame ``index`` is on disk, complete and of the expected size (only with ``resume``)."""
        if not self.resume or self.width is None or self.height is None:
            return False
        width = self.width // len(self.face_suffixes) if self.face_suffixes else self.width
        return all(is_valid_frame(path, width, self.height) for path in self.paths(index))

    def pending(self, num_frames: int) -> list[int]:
        """Indices of the frames still to render (all of them unless resuming)."""
        return [i for i in range(num_frames) if not self.is_done(i)]

    def write(self, index: int, image: np.ndarray) -> list[Path]:
        """Write frame ``index``: float images are scene-linear (PNG encodes sRGB); faces split along width."""
        paths = self.paths(index)
        parts = np.split(np.asarray(image), len(paths), axis=1) if len(paths) > 1 else [image]
        for path, part in zip(paths, parts, strict=True):
            if self.kind == "png":
                write_png(path, part, overwrite=True)
            elif self.kind == "exr":
                write_exr(path, part, half=self.half, envmap=self.envmap, overwrite=True)
            else:
                write_npy(path, part, overwrite=True)
        return paths


class VideoWriter:
    """Streaming H.264 MP4 writer (PyAV, yuv420p): frames go to a temp file renamed into place on close.

    Use as a context manager; an exception inside the block deletes the temp file and leaves no output.
    ``spherical=True`` marks the video as a 360-degree equirectangular one (Spherical Video V1 metadata, see
    ``spherical.py``: FFmpeg writes its ``sv3d`` box only from stream side data PyAV cannot set).
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 18, spherical: bool = False,
                 overwrite: bool = False, preset: str = "medium"):
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ConfigError(f"{path}: H.264 yuv420p needs even width and height, got {width}x{height}; "
                              "choose an even resolution")
        if not fps > 0:
            raise ConfigError(f"{path}: fps={fps}: expected a positive frame rate")
        self.path, self.width, self.height, self.spherical = Path(path), int(width), int(height), spherical
        self.frames = 0
        self._tmp = prepare_output(self.path, overwrite)
        try:
            self._open(fps, crf, preset)
        except BaseException as exc:
            self._abort()
            if isinstance(exc, OSError) or type(exc).__module__.startswith("av"):
                raise InputError(f"{self.path}: cannot open the video for writing ({exc})") from exc
            raise

    def _open(self, fps: float, crf: int, preset: str) -> None:
        import av  # heavy: PyAV/FFmpeg (only when video is read or written)

        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: uint8 sRGB [H, W, 3], or float scene-linear (encoded with ``to_srgb8``)."""
        import av  # heavy: PyAV/FFmpeg (only when video is read or written)

        frame = np.asarray(frame)
        if frame.dtype.kind == "f":
            frame = to_srgb8(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ConfigError(f"{self.path}: frame {self.frames} is {frame.dtype} {frame.shape}, "
                              f"expected uint8 ({self.height}, {self.width}, 3)")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def close(self) -> Path:
        """Flush, close, add spherical metadata if asked, and rename onto the final name."""
        if self.frames == 0:
            self._abort()
            raise ConfigError(f"{self.path}: no frames were written; nothing to save")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            if self.spherical:
                add_spherical_metadata(self._tmp)
        except BaseException:
            self._abort()
            raise
        commit_output(self._tmp, self.path)
        return self.path

    def _abort(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # closing a half-written container may fail; the temp file is removed anyway
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
