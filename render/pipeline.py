"""``nerfstage render RUN``: a camera path through a trained run into an MP4, or a folder of PNG / EXR / NPY frames.

Colour convention
-----------------
The model is trained on the dataset's 8-bit images as they are (like nerfstudio), so its ``rgb`` is
**display-referred, sRGB-encoded** values in [0, 1], not scene-linear light. :func:`encode_rgb` is the one place
that turns it into file values: PNG and MP4 get those values directly (clipped, rounded to 8 bits: no transfer
function is applied, so a render of a training view matches the training image); EXR ("scene-linear") gets
``srgb_to_linear(rgb)`` (the sRGB curve undone, Rec.709 primaries, D65, as the EXR header says).

Other outputs: ``alpha`` is linear coverage in every format; ``depth`` is in dataset units (normalised depth
divided by the dataparser scale: metres for metric captures), z-depth for perspective / orthographic cameras,
raw float in EXR (channel Z) / NPY, and for PNG / MP4 a grey preview ``depth / depth_range`` (near = black);
``normal`` is world-frame (normalised scene frame, +z up), raw [-1, 1] floats in EXR / NPY and ``(n + 1) / 2``
in PNG / MP4.

Files and resume
----------------
Every file is written atomically (temp name, renamed when complete): an error or a kill never leaves a partial
file under the final name. Frame folders resume by skipping frames already on disk and valid. An MP4 render keeps
its finished frames as PNGs in a hidden sibling folder ``.NAME.frames/`` while it runs (removed when the video is
complete), so ``--resume`` continues an interrupted video render too.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..core import shards
from ..core.errors import ConfigError, InputError, OutputExistsError
from ..core.shards import ShardSpec, process_group
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..nerf.run import LoadedRun
from .cubemap import FACE_SUFFIXES
from .image import DEFAULT_MEMORY_BUDGET, OUTPUTS, ImageOptions, check_memory_budget, render_image
from .paths import write_camera_path
from .plan import ShotOptions, build_path, frame_camera, reference_distance
from .writers import FrameSequenceWriter, VideoWriter, prepare_output, srgb_to_linear, write_exr

_NOT_A_FOLDER = (".mov", ".mkv", ".avi", ".webm", ".gif", ".m4v", ".png", ".exr", ".jpg", ".jpeg", ".npy", ".json")
OutputKind = Literal["rgb", "depth", "alpha", "normal"]
FrameFormat = Literal["png", "exr", "npy"]


@dataclass(frozen=True)
class RenderOptions:
    """Where and how frames are written (the shot itself is ``ShotOptions``)."""

    output: OutputKind = "rgb"
    """What each frame shows: rgb | depth | alpha | normal."""
    frame_format: FrameFormat = "png"
    """Frame files in a folder output: png (8-bit) | exr (float; rgb scene-linear) | npy (raw float)."""
    half: bool = False
    """EXR frames as half floats."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays sent to the model at once (the model's memory budget)."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    """RAM the frame buffers may take (``FRAME_BYTES_PER_PIXEL`` rule); a larger frame is refused before any work."""
    lens_samples: int = 1
    """Thin-lens samples per pixel (depth of field; more = smoother bokeh)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour, sRGB-encoded [0, 1]."""
    depth_range: float | None = None
    """PNG / MP4 depth preview: this depth (dataset units) maps to white (default: 2 x the median camera
    distance to the scene centre)."""
    resume: bool = False
    """Skip frames already written and valid (frame folders, and an interrupted MP4's frame cache)."""
    overwrite: bool = False
    """Replace an existing output."""
    crf: int = 18
    """H.264 quality (lower = better)."""
    progress: bool = True
    """Show a progress bar with frames/s."""


@dataclass
class RenderResult:
    """What a render produced."""

    output: Path
    """The MP4 or the frame folder."""
    frames: int
    """Frames in the output."""
    rendered: int
    """Frames rendered now (fewer than ``frames`` when resuming)."""
    width: int
    """Frame width, pixels."""
    height: int
    """Frame height, pixels."""
    fps: float
    """Video frame rate."""
    seconds: float
    """Wall-clock seconds spent rendering."""
    rays_per_second: float
    """Rays rendered per second (all frames rendered now)."""
    files: list[Path] = field(default_factory=list)
    """Files written (frame folders)."""


def encode_rgb(rgb: np.ndarray, kind: str) -> np.ndarray:
    """The model's sRGB-encoded ``rgb`` [H, W, 3] -> file values: uint8 for png / mp4 (values as they are),
    scene-linear float32 for exr / npy (see the module docstring). The one colour conversion of the render."""
    if kind in ("png", "mp4"):
        return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)

    return srgb_to_linear(rgb)


def encode_frame(images: dict[str, np.ndarray], options: RenderOptions, kind: str, depth_range: float) -> np.ndarray:
    """The array written for one frame of ``options.output`` in file kind ``kind`` (png | mp4 | exr | npy)."""
    out = options.output
    if out == "rgb":
        return encode_rgb(images["rgb"], kind)
    value = images[out]
    if kind in ("exr", "npy"):
        return value.astype(np.float32)
    if out == "depth":
        value = np.clip(value / depth_range, 0.0, 1.0)
    elif out == "normal":
        value = (value + 1.0) * 0.5 * (np.linalg.norm(value, axis=-1, keepdims=True) > 0)
    grey = np.round(np.clip(value, 0.0, 1.0) * 255.0).astype(np.uint8)
    return grey if kind == "png" or grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)


def is_video(output: Path) -> bool:
    return Path(output).suffix.lower() == ".mp4"


FRAME_BYTES_PER_PIXEL = {"rgb": 64, "alpha": 64, "depth": 64, "normal": 224}
"""RAM per pixel of one frame by ``output``: render_pixels' rgb/alpha/depth/valid buffers (21 B), the frame-shaped
copies (z-depth factors, encoded image) and slack; normals add float64 surface points and their differences."""


def check_frame_memory(width: int, height: int, options: RenderOptions) -> int:
    """Bytes one ``width`` x ``height`` frame needs; ConfigError over ``options.memory_budget_bytes``."""
    need = width * height * FRAME_BYTES_PER_PIXEL.get(options.output, FRAME_BYTES_PER_PIXEL["normal"])
    return check_memory_budget(f"a {width}x{height} frame", need, options.memory_budget_bytes,
                               "choose a smaller resolution or a larger memory budget (panoramas above 8K: "
                               "`nerfstage export panorama` renders in tiles)")


def check_options(output: Path, options: RenderOptions) -> None:
    """ConfigError for option combinations that cannot work."""
    if options.output not in OUTPUTS:
        raise ConfigError(f"--output {options.output!r}: expected one of {', '.join(OUTPUTS)}")
    if options.frame_format not in ("png", "exr", "npy"):
        raise ConfigError(f"--format {options.frame_format!r}: expected png, exr or npy")
    if Path(output).suffix.lower() in _NOT_A_FOLDER:
        raise ConfigError(f"-o {output}: only .mp4 videos are written; give OUT.mp4 or a folder for frames")


class _Renderer:
    """Renders frame i of a path with one model, camera options and a progress bar."""

    def __init__(self, run: LoadedRun, path, shot: ShotOptions, options: RenderOptions, bar, splats=None):
        self.run, self.path, self.shot, self.bar, self.splats = run, path, shot, bar, splats
        self.focus = reference_distance(path, run.world_from_cams)
        self.image_options = ImageOptions(options.max_rays_per_chunk, options.background, options.lens_samples,
                                          "auto", 1.0 / run.scene.scale)
        self.outputs = ("rgb", "alpha", options.output)
        self.rays, self.seconds = 0, 0.0

    def camera(self, index: int):
        return frame_camera(self.path, index, self.shot, self.focus)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        camera = self.camera(index)
        start = time.perf_counter()
        if self.splats is not None:
            from .splats.render import render_splat_image  # the rasteriser, only for splat renders

            images = render_splat_image(self.splats, camera, self.path.world_from_cams[index], self.run.scene,
                                        self.outputs, self.image_options.background)
        else:
            images = render_image(self.run.model, camera, self.path.world_from_cams[index], self.outputs,
                                  self.image_options)
        self.seconds += time.perf_counter() - start
        self.rays += camera.width * camera.height
        self.bar.set_postfix(rays_s=f"{self.rays / max(self.seconds, 1e-9):.0f}", refresh=False)
        return images


def default_depth_range(run: LoadedRun, path, options: RenderOptions) -> float:
    if options.depth_range is not None:
        return float(options.depth_range)
    return 2.0 * reference_distance(path, run.world_from_cams) / run.scene.scale


def render_path(run: LoadedRun, output: Path, shot: ShotOptions | None = None, options: RenderOptions | None = None,
                path=None, shard: ShardSpec | None = None, splats=None) -> RenderResult:
    """Render ``shot`` (or a ready ``path``: a CameraPath) through the LoadedRun ``run`` into ``output``
    (``.mp4`` -> H.264 video; anything else -> a folder of numbered frames). ``shard`` (default: the ``torchrun``
    environment) renders only some frames, through the working folder (``render/sharded.py``). With ``splats``
    (GaussianSplats in the run's dataset frame) the frames are rasterised from them instead of ray-marched through
    the field."""
    shot, options = shot or ShotOptions(), options or RenderOptions()
    shard = shard or ShardSpec.parse()
    output = Path(output)
    check_options(output, options)
    with process_group("cpu"):  # gloo: rendering only needs its barrier, whatever the model's device
        return _render_path(run, output, shot, options, path, shard, splats)


def _render_path(run: LoadedRun, output: Path, shot: ShotOptions, options: RenderOptions, path,
                 shard: ShardSpec, splats=None) -> RenderResult:
    if path is None:
        path = build_path(shot, run.world_from_cams[run.train_indices] if run.has_cameras else run.world_from_cams,
                          [run.intrinsics[i] for i in run.train_indices])
    first = frame_camera(path, 0, shot, 1.0)
    check_frame_memory(first.width, first.height, options)
    depth_range = default_depth_range(run, path, options)
    if shard.sharded:
        shard.select(len(path))  # a bad --frames fails before the progress bar opens
    bar = tqdm(total=len(path), desc="render", unit="frame", disable=not (options.progress and shard.shows_progress),
               dynamic_ncols=True)
    renderer = _Renderer(run, path, shot, options, bar, splats)
    start = time.perf_counter()
    try:
        if shard.sharded:
            result = render_sharded(output, path, renderer, options, depth_range, shard)
        elif is_video(output):
            result = _render_video(output, path, renderer, options, depth_range)
        else:
            result = _render_frames(output, path, renderer, options, depth_range)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    result.rays_per_second = renderer.rays / max(renderer.seconds, 1e-9)
    return result


def _frame_writer(folder: Path, renderer: _Renderer, options: RenderOptions, kind: str, resume: bool,
                  overwrite: bool):
    camera = renderer.camera(0)
    kind_name = renderer.shot.camera or renderer.path.camera_type
    six = kind_name == "cubemap" and renderer.shot.cubemap_layout == "six" and kind != "mp4"
    envmap = "latlong" if kind_name == "equirectangular" and kind == "exr" else None
    return FrameSequenceWriter(folder, "png" if kind == "mp4" else kind, camera.width, camera.height,  # type: ignore
                               resume=resume, overwrite=overwrite, half=options.half, envmap=envmap,
                               face_suffixes=FACE_SUFFIXES if six else None)


def _render_frames(folder: Path, path, renderer: _Renderer, options: RenderOptions, depth_range: float):
    kind = options.frame_format
    writer = _frame_writer(folder, renderer, options, kind, options.resume, options.overwrite)
    pending = set(writer.pending(len(path)))
    renderer.bar.update(len(path) - len(pending))
    files: list[Path] = []
    for index in sorted(pending):
        images = renderer(index)
        files += _write_frame(writer, index, encode_frame(images, options, kind, depth_range), options,
                              images["alpha"])
        renderer.bar.update(1)
    camera = renderer.camera(0)
    return RenderResult(folder, len(path), len(pending), camera.width, camera.height, path.video_fps(), 0.0, 0.0,
                        files)


def _write_frame(writer, index: int, frame: np.ndarray, options: RenderOptions, alpha: np.ndarray) -> list[Path]:
    """Write one frame; EXR colour carries its alpha as an A channel, EXR alpha is named A (not Z)."""
    if writer.kind != "exr" or writer.face_suffixes or options.output not in ("rgb", "alpha"):
        return writer.write(index, frame)

    file = writer.paths(index)[0]
    if options.output == "rgb":
        write_exr(file, np.concatenate([frame, alpha[..., None]], axis=-1), options.half, envmap=writer.envmap,
                  overwrite=True)
    else:
        write_exr(file, frame, options.half, ("A",), envmap=writer.envmap, overwrite=True)
    return [file]


def frame_cache(video: Path) -> Path:
    """The hidden folder of finished frames of an MP4 render in progress."""
    return video.with_name(f".{video.name}.frames")


def _render_video(video: Path, path, renderer: _Renderer, options: RenderOptions, depth_range: float):
    camera = renderer.camera(0)
    spherical = (renderer.shot.camera or path.camera_type) == "equirectangular"
    prepare_output(video, options.overwrite)  # refuse an existing file before any work
    cache = frame_cache(video)
    if cache.exists() and not options.resume:
        shutil.rmtree(cache)
    writer = _frame_writer(cache, renderer, options, "mp4", resume=True, overwrite=True)
    done = set(range(len(path))) - set(writer.pending(len(path))) if options.resume else set()
    with VideoWriter(video, camera.width, camera.height, path.video_fps(), options.crf, spherical,
                     options.overwrite) as out:
        for index in range(len(path)):
            frame = _cached_frame(writer, index) if index in done else None
            if frame is None:
                frame = encode_frame(renderer(index), options, "mp4", depth_range)
                writer.write(index, frame)
            out.write(frame)
            renderer.bar.update(1)
    shutil.rmtree(cache, ignore_errors=True)
    return RenderResult(video, len(path), len(path) - len(done), camera.width, camera.height, path.video_fps(),
                        0.0, 0.0, [video])


def _cached_frame(writer, index: int) -> np.ndarray | None:
    """A finished frame of the MP4 frame cache as uint8 RGB [H, W, 3], or None when unreadable."""
    image = cv2.imread(str(writer.paths(index)[0]), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_path(run: LoadedRun, file: Path, shot: ShotOptions, overwrite: bool = False):
    """Build the shot's path and write it as a nerfstudio camera_path.json; returns the CameraPath."""
    cams = run.world_from_cams[run.train_indices] if run.has_cameras else run.world_from_cams
    path = build_path(shot, cams, [run.intrinsics[i] for i in run.train_indices])
    if not math.isfinite(path.world_from_cams.sum()):
        raise InputError(f"{file}: the built path has non-finite poses; check the path options")
    write_camera_path(file, path, overwrite)
    return path


# --- sharded (farm shards / torchrun ranks; nerfstage.core.shards) -------------------------------------------------
# Each process renders its frames into the output's working folder: the frame folder itself for PNG / EXR / NPY
# frames, the MP4's frame cache ``.NAME.frames/`` (PNG) for a video. Frames already there and valid are kept (a
# re-queued task resumes); ``overwrite`` renders this process's frames again. The final output is assembled by
# ``assemble_render`` -- rank 0 after a barrier under torchrun, or ``nerfstage assemble`` after farm shards: a
# video is encoded from the cached frames (the same encoder and frames as a single-process render, so the same
# file), a frame folder is checked complete. A missing frame is named, with the shard that should have made it.

def working_folder(output: Path) -> Path:
    """Where the frames of a sharded render go: the MP4's frame cache, or the frame folder."""
    return frame_cache(output) if is_video(output) else Path(output)


def _job(output: Path, writer, renderer: _Renderer, count: int, options: RenderOptions) -> dict[str, Any]:
    camera = renderer.camera(0)
    spherical = (renderer.shot.camera or renderer.path.camera_type) == "equirectangular"
    return {"kind": "video" if is_video(output) else "frames", "output": Path(output).name, "frames": count,
            "width": camera.width, "height": camera.height, "fps": renderer.path.video_fps(), "crf": options.crf,
            "spherical": spherical, "frame_kind": writer.kind, "half": writer.half, "envmap": writer.envmap,
            "face_suffixes": list(writer.face_suffixes or []), "output_kind": options.output}


def render_sharded(output: Path, path, renderer: _Renderer, options: RenderOptions, depth_range: float,
                   spec: ShardSpec) -> RenderResult:
    """Render this process's frames of ``path`` into the working folder; assemble when ``spec.assembles``."""
    output = Path(output)
    kind = "mp4" if is_video(output) else options.frame_format
    if is_video(output) and not spec.partial:
        prepare_output(output, options.overwrite)  # a whole job refuses an existing video before any work
    count = len(path)
    mine = spec.select(count)  # a bad --frames fails before anything is written
    folder = working_folder(output)
    if kind != "mp4" and not options.overwrite and shards.read_job(folder) is None and \
            any(folder.glob(f"frame_*.{kind}")):
        raise OutputExistsError(f"{folder}: already holds frame_*.{kind} frames of another render; pass "
                                "--overwrite or choose another folder")
    writer = _frame_writer(folder, renderer, options, kind, resume=True, overwrite=True)
    job = _job(output, writer, renderer, count, options)
    if spec.rank == 0:
        shards.write_job(folder, job, options.overwrite)
    shards.barrier()  # rank 0 has checked the working folder's job
    if spec.rank != 0:
        shards.write_job(folder, job, overwrite=False)  # the same job: a no-op check
    todo = mine if options.overwrite else [i for i in mine if not writer.is_done(i)]
    renderer.bar.reset(total=len(mine))
    renderer.bar.update(len(mine) - len(todo))
    for index in todo:
        images = renderer(index)
        frame = encode_frame(images, options, kind, depth_range)
        if kind == "mp4":
            writer.write(index, frame)
        else:
            _write_frame(writer, index, frame, options, images["alpha"])
        renderer.bar.update(1)
    shards.mark_done(folder, spec)
    shards.barrier()
    camera = renderer.camera(0)
    if spec.assembles:
        assemble_render(output, overwrite=options.overwrite)
    return RenderResult(output, count, len(todo), camera.width, camera.height, path.video_fps(), 0.0, 0.0,
                        [writer.paths(i)[0] for i in mine])


def assemble_render(output: Path, overwrite: bool = False, progress: bool = False) -> list[Path]:
    """Build the final output of a sharded render from its working folder (see the module docstring); InputError
    naming the missing frames and their shard when it is incomplete. Returns the files of the output."""
    output = Path(output)
    folder = working_folder(output)
    job = shards.read_job(folder)
    shards.require(job is not None and job["kind"] in ("video", "frames"),
                   f"{output}: no sharded render to assemble (no {shards.JOB_FILE} in {folder})")
    writer = FrameSequenceWriter(folder, job["frame_kind"], job["width"], job["height"], resume=True,
                                 overwrite=True, half=job["half"], envmap=job["envmap"],
                                 face_suffixes=tuple(job["face_suffixes"]) or None)
    missing = [i for i in range(job["frames"]) if not writer.is_done(i)]
    if missing:
        names = [writer.paths(i)[0].name for i in missing]
        raise InputError(shards.missing_message(output, "frames", [i + 1 for i in missing], names,
                                                       shards.shard_total(folder)))
    if job["kind"] == "frames":
        (folder / shards.JOB_FILE).unlink(missing_ok=True)
        shards.clear_done(folder)
        return [p for i in range(job["frames"]) for p in writer.paths(i)]
    return [_encode_video(output, writer, job, overwrite)]


def _encode_video(video: Path, writer: FrameSequenceWriter, job: dict[str, Any], overwrite: bool) -> Path:
    """The MP4 from the cached frames, then the cache removed."""
    with VideoWriter(video, job["width"], job["height"], job["fps"], job["crf"], job["spherical"], overwrite) as out:
        for index in range(job["frames"]):
            frame = _cached_frame(writer, index)
            shards.require(frame is not None, f"{writer.paths(index)[0]}: unreadable cached frame; delete it and "
                                              "rerun its shard")
            out.write(np.asarray(frame))
    shutil.rmtree(writer.directory, ignore_errors=True)
    return video
