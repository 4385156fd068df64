"""Validity checks of the chain's output files: each returns the file's figures, or None when the file is missing or
does not decode. They decode the file (not just stat it), so a half-written output counts as missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import NerfstageError
from ..export.gltf import read_mesh
from ..render.splats.io import read_splats
from ..render.writers import read_exr


def video_info(path: Path) -> dict[str, Any] | None:
    """``{"frames", "width", "height", "fps"}`` of an MP4 after decoding every frame (PyAV); None if unreadable."""
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            width, height, rate = stream.codec_context.width, stream.codec_context.height, stream.average_rate
    except (av.error.FFmpegError, IndexError, OSError, ValueError):
        return None
    if frames == 0:
        return None
    return {"frames": frames, "width": int(width), "height": int(height), "fps": float(rate) if rate else None}


def video_frame(path: Path, index: int) -> Any:
    """Frame ``index`` of an MP4 as uint8 RGB [H, W, 3] (the last frame when it has fewer), or None."""
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

    frame = None
    try:
        with av.open(str(path)) as container:
            for i, decoded in enumerate(container.decode(video=0)):
                frame = decoded
                if i >= index:
                    break
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None if frame is None else frame.to_ndarray(format="rgb24")


def video_frames(path: Path) -> list[Any] | None:
    """Every frame of an MP4 as uint8 RGB [H, W, 3], or None when it does not decode."""
    import av  # heavy: PyAV/FFmpeg (only when video is read or written)

    try:
        with av.open(str(path)) as container:
            frames = [decoded.to_ndarray(format="rgb24") for decoded in container.decode(video=0)]
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return frames or None


def glb_faces(path: Path) -> dict[str, int] | None:
    """``{"faces", "vertices"}`` of a GLB that trimesh loads with at least one face; None otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        mesh = read_mesh(path)
    except Exception:  # noqa: BLE001 - trimesh raises many kinds for a damaged file: all mean "not valid"
        return None
    if len(mesh.faces) == 0:
        return None
    return {"faces": int(len(mesh.faces)), "vertices": int(len(mesh.vertices))}


def exr_size(path: Path) -> dict[str, Any] | None:
    """``{"width", "height", "channels"}`` of an EXR that opens with at least one channel; None otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        channels, _ = read_exr(path)
    except Exception:  # noqa: BLE001 - OpenEXR raises plain exceptions for a damaged file
        return None
    if not channels:
        return None
    height, width = next(iter(channels.values())).shape[:2]
    return {"width": int(width), "height": int(height), "channels": sorted(channels)}


def splat_info(path: Path) -> dict[str, Any] | None:
    """``{"splats", "bytes"}`` of a splat file (.ply / .spz / .glb) after reading it whole; None if unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        splats = read_splats(path)
    except (NerfstageError, OSError, ValueError):
        return None
    return {"splats": splats.num_splats, "bytes": path.stat().st_size} if splats.num_splats > 0 else None
