"""360 plates for LED walls and image-based lighting: a latlong (equirectangular) or cubemap panorama of a run.

``export_panorama(run, "plate.exr", PanoramaOptions(width=8192))`` renders the full sphere seen from one point.

Where and which way
-------------------
``position`` is a point in the **dataset frame** (the world of the run's ``transforms.json``); it is mapped into
the normalised frame with the run's ``dataparser_transforms.json``. Without it the panorama is taken from the
scene centre (the normalised frame's origin: the mean camera position of a real capture, the object centre of a
Blender scene), or from training camera ``camera_index``. Orientation: with ``camera_index`` the panorama looks
where that camera looks (its up is the camera's up); otherwise it is level in the normalised frame (+Z up, the
mean camera up) and its centre column looks along +Y. ``yaw`` turns it left (counter-clockwise seen from above),
``pitch`` up and ``roll`` clockwise as seen from behind, in degrees, applied in the panorama's own frame (the
pan/tilt/roll head of ``track.py``).

Layouts and files
-----------------
* ``latlong``: ``width`` x ``height`` (default ``width / 2``) equirectangular image, nerfstudio's orientation
  (``render/equirect.py``): the centre column is the forward view, the top row straight up. EXR files carry
  ``envmap = latlong`` (what Unreal's Media Plate and HDRI backdrops read).
* ``cubemap`` + ``six``: six ``face_size``-square files ``NAME_posx.EXT, NAME_negx, NAME_posy, NAME_negy,
  NAME_posz, NAME_negz``, in the OpenGL / DirectX cube-map convention (``GL_TEXTURE_CUBE_MAP_POSITIVE_X`` ...;
  DDS/KTX cube textures, three.js and media servers that take six cube faces use it): seen from the panorama
  centre with the panorama's forward view as ``posz``, ``negz`` behind, ``posx`` to the right, ``negx`` to the
  left, ``posy`` up (top edge towards ``negz``), ``negy`` down (top edge towards ``posz``). These are
  ``render/cubemap.py``'s faces with +Z and -Z swapped, as that module documents for GL samplers.
* ``cubemap`` + ``cross``: one horizontal-cross image 4 x 3 faces (``render/cubemap.py``: left, front, right,
  back in the middle row, up above and down below the front face); the six empty cells have alpha 0.

Formats (the output's extension decides): ``.exr`` scene-linear RGBA (half float unless ``half=False``,
ZIP-compressed, tiled 256 x 256), Rec.709 primaries / D65 ``chromaticities`` and ``colorSpace = lin_rec709`` in
the header, colour over black (premultiplied, as EXR expects); ``.png`` 8-bit sRGB RGB over white (as
``nerfstage render``). Colour conversion as ``render.pipeline.encode_rgb``.

EXR files are **mip-mapped** by default (``mipmap=True``): level 0 is the rendered image exactly, then every
level halves the previous one (2 x 2 box filter, sizes rounded down, down to 1 x 1), all in one tiled
``MIPMAP_LEVELS`` file -- what ``maketx`` makes for texture and environment lookups, and what a media server or
Unreal's tiled EXR playback reads to show a 16K plate on a distant or small wall without aliasing. The OpenEXR
package writes one level only (a mip-mapped header from it yields a file with an incomplete chunk table), so
mip-mapped files are written with OpenImageIO's ``make_texture`` (plain-texture mode, which keeps level 0
bit-exact; its latlong mode would blend the seam columns and the pole rows) and tagged ``textureformat =
LatLong Environment`` / ``envmap = latlong`` and ``wrapmodes = periodic,clamp`` for latlong images. Readers
that ignore levels (the OpenEXR package, most viewers) see level 0. ``mipmap=False`` writes a single level.

Memory
------
The image is rendered in ``tile_size`` x ``tile_size`` tiles (0 = one tile: no tiling), each in chunks of at most
``max_rays_per_chunk`` rays; finished tiles go into a half-float scratch file on disk (``np.memmap`` next to the
output, removed at the end) that is written into the final file in one pass. RAM therefore holds one tile's rays
and pixels (``TILE_BYTES_PER_PIXEL`` each) plus, during the final write, the encoded image: ``width * height *
8`` bytes for half RGBA (1 GiB at 16384 x 8192), or ``MIPMAP_BYTES_PER_PIXEL`` when mip-mapping (the interleaved
copy, OpenImageIO's buffer and its smaller levels: measured 2.6 GiB of anonymous memory at 16384 x 8192).
:func:`estimate_memory` is that rule; ``export_panorama`` refuses a request over ``memory_budget_bytes`` before
rendering. Every file is written to a temp name and renamed when complete -- the six cube faces only once all
six are written: an error leaves nothing under the final names.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import ConfigError, InputError
from ..core import shards
from ..core.shards import ShardSpec, process_group
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..nerf.run import LoadedRun
from ..render.cubemap import CubemapCamera
from ..render.equirect import EquirectangularCamera
from ..render.image import DEFAULT_MEMORY_BUDGET, ImageOptions, check_memory_budget, render_pixels
from ..render.writers import prepare_output, write_npy
from .panorama_io import (  # noqa: F401  (CUBE_FILE_FACES, EXR_TILE, LIN_REC709, write_rgba_exr: public here too)
    CUBE_FILE_FACES,
    EXR_TILE,
    LIN_REC709,
    _open_scratch,
    _store_tile,
    _write_outputs,
    write_rgba_exr,
)
from .track import WORLD_FROM_CAM_REST, euler_rotation

PanoramaLayout = Literal["latlong", "cubemap"]
CubemapFiles = Literal["six", "cross"]
FORMATS = (".exr", ".png")
"""Output extensions ``export_panorama`` writes."""
TILE_BYTES_PER_PIXEL = 96
"""RAM per pixel of a tile: pixel index (8), ray origin + direction (24, twice while generated), valid flag,
rgb + alpha + depth (20) and the float32 RGBA tile (16), rounded up."""
MIPMAP_BYTES_PER_PIXEL = 24
"""RAM per pixel while writing a mip-mapped EXR (see Memory in the module docstring; measured 20)."""


@dataclass(frozen=True)
class PanoramaOptions:
    """What panorama to render and how (see the module docstring for position, orientation and files)."""

    width: int = 4096
    """Latlong width in pixels (360 degrees); also sets the default cubemap face size."""
    height: int = 0
    """Latlong height in pixels (180 degrees); 0 = width / 2."""
    layout: PanoramaLayout = "latlong"
    """latlong (one equirectangular image) | cubemap (six faces)."""
    cubemap_layout: CubemapFiles = "six"
    """Cubemap files: six (one file per face, NAME_posx ...) | cross (one horizontal-cross image)."""
    face_size: int = 0
    """Cubemap face side in pixels; 0 = width / 4 (the latlong's pixel density at the equator)."""
    position: tuple[float, float, float] | None = None
    """Panorama centre in dataset coordinates; None = the scene centre (or ``camera_index``'s position)."""
    camera_index: int | None = None
    """Take position and orientation from this camera of the run's dataset (index into its frames)."""
    yaw: float = 0.0
    """Turn left by this many degrees (about the panorama's up axis)."""
    pitch: float = 0.0
    """Tilt up by this many degrees."""
    roll: float = 0.0
    """Roll clockwise (seen from behind) by this many degrees."""
    tile_size: int = 1024
    """Tile side in pixels; 0 renders the whole image at once (subject to ``memory_budget_bytes``)."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    """RAM the panorama's buffers may take (rule in ``estimate_memory``); larger requests are refused."""
    half: bool = True
    """EXR as half floats (float32 otherwise)."""
    mipmap: bool = True
    """EXR with the full mip chain (tiled MIPMAP_LEVELS, box-filtered; see the module docstring); False = one
    level. PNG files have no levels."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays sent to the model at once (bounds the model's working memory)."""
    overwrite: bool = False
    """Replace existing output files."""
    progress: bool = True
    """Show a progress bar over the tiles."""


@dataclass
class PanoramaResult:
    """What ``export_panorama`` wrote."""

    files: list[Path]
    """Files written (one, or six cube faces)."""
    width: int
    """Width of the rendered image (latlong, cross, or six faces side by side), pixels."""
    height: int
    """Height of the rendered image, pixels."""
    seconds: float
    """Wall-clock seconds (rendering and writing)."""
    peak_tile_bytes: int
    """RAM of the largest tile's ray and pixel buffers (TILE_BYTES_PER_PIXEL rule; the model's own working
    memory per chunk comes on top)."""
    tiles: int = 0
    """Tiles rendered."""
    world_from_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    """[4, 4] pose of the panorama centre, normalised frame, OpenGL axes."""


def output_format(path: Path) -> str:
    """``exr`` or ``png`` from the output's extension; ConfigError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: unknown panorama extension '{Path(path).suffix}'; expected .exr or .png")
    return suffix[1:]


def output_files(path: Path, options: PanoramaOptions) -> list[Path]:
    """The files a panorama writes: ``path``, or its six ``_posx ... _negz`` siblings."""
    path = Path(path)
    if options.layout == "cubemap" and options.cubemap_layout == "six":
        return [path.with_name(f"{path.stem}_{name}{path.suffix}") for name, _ in CUBE_FILE_FACES]
    return [path]


def panorama_camera(options: PanoramaOptions):
    """The render camera: EquirectangularCamera, or a CubemapCamera (strip for six files, or cross)."""
    width = int(options.width)
    if width < 4:
        raise ConfigError(f"panorama width={options.width}: expected at least 4 pixels")
    if options.layout == "latlong":
        return EquirectangularCamera(*latlong_size(width, int(options.height)))
    if options.layout != "cubemap":
        raise ConfigError(f"panorama layout={options.layout!r}: expected latlong or cubemap")
    if options.cubemap_layout not in ("six", "cross"):
        raise ConfigError(f"cubemap layout={options.cubemap_layout!r}: expected six or cross")
    face = int(options.face_size) or width // 4
    if face < 1:
        raise ConfigError(f"cubemap face_size={options.face_size}: expected a positive number of pixels")
    return CubemapCamera(face, "strip" if options.cubemap_layout == "six" else "cross")


def latlong_size(width: int, height: int = 0) -> tuple[int, int]:
    """(width, height) of a latlong image: ``height`` 0 means ``width / 2`` (square pixels over 360 x 180
    degrees); ConfigError below 2 pixels."""
    height = int(height) or int(width) // 2
    if height < 2:
        raise ConfigError(f"panorama height={height}: expected at least 2 pixels (0 = width / 2)")
    return int(width), height


def estimate_memory(width: int, height: int, options: PanoramaOptions) -> int:
    """Bytes of RAM the panorama's own buffers need: one tile's rays and pixels plus the encoded image during
    the final write (8 bytes per pixel: half RGBA or uint8 RGB + its sRGB working copy; MIPMAP_BYTES_PER_PIXEL
    for a mip-mapped EXR -- the rule applies to both formats, as the extension is not known here)."""
    tile = int(options.tile_size)
    tile_pixels = width * height if tile <= 0 else min(tile, width) * min(tile, height)
    per_pixel = MIPMAP_BYTES_PER_PIXEL if options.mipmap else 8
    return tile_pixels * TILE_BYTES_PER_PIXEL + width * height * per_pixel


def check_memory(width: int, height: int, options: PanoramaOptions) -> int:
    """``estimate_memory``; ConfigError when it is over ``memory_budget_bytes``."""
    hint = "render in tiles (tile_size / --tile-size 1024)" if options.tile_size <= 0 or \
        options.tile_size > 4096 else "choose a smaller resolution or a larger memory budget"
    return check_memory_budget(f"panorama {width}x{height} with tile_size={options.tile_size}",
                               estimate_memory(width, height, options), options.memory_budget_bytes, hint)


def panorama_pose(run: LoadedRun, options: PanoramaOptions) -> np.ndarray:  # [4, 4] normalised frame, OpenGL axes
    """The panorama's camera-to-world pose in the run's normalised frame (see the module docstring)."""
    angles = (options.yaw, options.pitch, options.roll)
    if not all(math.isfinite(float(a)) for a in angles):
        raise ConfigError(f"panorama yaw/pitch/roll {angles}: expected finite degrees")
    head = euler_rotation(*angles)  # [3, 3] level rest pose (looks along +Y, +Z up) turned by the head
    pose = np.eye(4)
    pose[:3, :3] = head
    if options.camera_index is not None:
        count = len(run.world_from_cams)
        if not 0 <= int(options.camera_index) < count:
            raise ConfigError(f"camera_index={options.camera_index}: the run has {count} cameras "
                              f"(0..{count - 1}); is its dataset still at {run.dataset_path}?", field="camera_index")
        base = np.asarray(run.world_from_cams[int(options.camera_index)], dtype=np.float64)
        pose[:3, :3] = base[:3, :3] @ WORLD_FROM_CAM_REST.T @ head
        pose[:3, 3] = base[:3, 3]
    if options.position is not None:
        point = np.asarray(options.position, dtype=np.float64)
        if point.shape != (3,) or not np.isfinite(point).all():
            raise ConfigError(f"panorama position {options.position}: expected three finite numbers x, y, z")
        transform = np.asarray(run.scene.transform, dtype=np.float64)
        pose[:3, 3] = float(run.scene.scale) * (transform[:, :3] @ point + transform[:, 3])
    return pose


def tile_boxes(width: int, height: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of the tiles covering the image, row-major; one box when ``tile_size <= 0``."""
    if tile_size <= 0:
        return [(0, height, 0, width)]
    return [(r, min(r + tile_size, height), c, min(c + tile_size, width))
            for r in range(0, height, tile_size) for c in range(0, width, tile_size)]


def render_tile(model, camera, world_from_cam: np.ndarray, box: tuple[int, int, int, int],
                background: tuple[float, float, float], max_rays_per_chunk: int) -> np.ndarray:
    """[rows, cols, 4] float32 (sRGB-encoded rgb over ``background``, alpha) of one tile; pixels the camera does
    not see (unused cross cells) get the background and alpha 0."""
    row0, row1, col0, col1 = box
    rows, cols = torch.arange(row0, row1), torch.arange(col0, col1)
    indices = (rows[:, None] * camera.width + cols[None, :]).reshape(-1)  # [P] flat pixel indices
    options = ImageOptions(max_rays_per_chunk=int(max_rays_per_chunk), background=tuple(background))
    pixels = render_pixels(model, camera, world_from_cam, indices, options)
    return np.concatenate([pixels["rgb"], pixels["alpha"][:, None]], axis=-1).reshape(row1 - row0, col1 - col0, 4)


def render_to_scratch(model, camera, world_from_cam: np.ndarray, options: PanoramaOptions, fmt: str,
                      path: Path) -> tuple[np.ndarray, int, int]:
    """Render every tile into a scratch memmap at ``path``; returns (scratch, tiles, peak tile bytes)."""
    scratch = _open_scratch(path, fmt, camera.width, camera.height, options.half)
    background = (0.0, 0.0, 0.0) if fmt == "exr" else (1.0, 1.0, 1.0)
    boxes = tile_boxes(camera.width, camera.height, int(options.tile_size))
    peak = 0
    for box in tqdm(boxes, desc="panorama", unit="tile", disable=not options.progress, dynamic_ncols=True):
        tile = render_tile(model, camera, world_from_cam, box, background, options.max_rays_per_chunk)
        peak = max(peak, tile.shape[0] * tile.shape[1] * TILE_BYTES_PER_PIXEL)
        _store_tile(scratch, tile, box, fmt)
    scratch.flush()
    return scratch, len(boxes), peak


def export_panorama(run: LoadedRun, output: Path, options: PanoramaOptions | None = None,
                    shard: ShardSpec | None = None) -> PanoramaResult:
    """Render a 360 panorama of the LoadedRun ``run`` into ``output`` (.exr or .png; cube faces as six sibling
    files or a cross), tiled within ``options.memory_budget_bytes``. See the module docstring. ``shard`` (default:
    the ``torchrun`` environment) renders only some tiles, through a working folder (``panorama_shards.py``)."""
    options = options or PanoramaOptions()
    shard = shard or ShardSpec.parse()
    output = Path(output)
    fmt = output_format(output)
    camera = panorama_camera(options)
    check_memory(camera.width, camera.height, options)
    ImageOptions(max_rays_per_chunk=int(options.max_rays_per_chunk))  # its check of the chunk size, before any work
    files = output_files(output, options)
    for file in files:
        prepare_output(file, options.overwrite)  # refuse existing files before any work
    pose = panorama_pose(run, options)
    start = time.perf_counter()
    if shard.sharded:
        with process_group("cpu"):
            files, tiles, peak = render_panorama_sharded(run.model, camera, pose, output, options, fmt, shard)
        return PanoramaResult(files, camera.width, camera.height, time.perf_counter() - start, peak, tiles, pose)
    scratch_path = output.with_name(f".{output.stem}.scratch.npy")
    scratch = None
    try:
        scratch, tiles, peak = render_to_scratch(run.model, camera, pose, options, fmt, scratch_path)
        _write_outputs(files, scratch, camera, options, fmt)
    finally:
        del scratch
        scratch_path.unlink(missing_ok=True)
    return PanoramaResult(files, camera.width, camera.height, time.perf_counter() - start, peak, tiles, pose)


# --- sharded (farm shards / torchrun ranks; nerfstage.core.shards) -------------------------------------------------
# The items are the tiles (``tile_boxes``, row-major, numbered from 1). Each process renders its tiles into the
# working folder ``.STEM.tiles/`` next to the output, one ``tile_NNNNN.npy`` per tile holding exactly the values
# the single-process render stores in its scratch image (half/float RGBA planes [4, h, w] for EXR, uint8 RGB
# [h, w, 3] for PNG); tiles already there and whole are kept (resume). ``assemble_panorama`` -- rank 0 after a
# barrier under torchrun, or ``nerfstage assemble`` -- stitches them into the scratch image and writes the output
# file(s) exactly as a single-process export (mip levels built by the same writer), then removes the folder.

JOB_OPTIONS = ("width", "height", "layout", "cubemap_layout", "face_size", "tile_size", "half", "mipmap")
"""The PanoramaOptions fields the job file records: what the assembly needs to rebuild the output."""


def tiles_folder(output: Path) -> Path:
    """The working folder of a sharded panorama: ``.STEM.tiles`` next to it."""
    output = Path(output)
    return output.with_name(f".{output.stem}.tiles")


def tile_file(folder: Path, index: int) -> Path:
    """``tile_NNNNN.npy`` of 0-based tile ``index`` (numbered from 1)."""
    return Path(folder) / f"tile_{index + 1:05d}.npy"


def _tile_shape(box: tuple[int, int, int, int], fmt: str) -> tuple[int, ...]:
    rows, cols = box[1] - box[0], box[3] - box[2]
    return (4, rows, cols) if fmt == "exr" else (rows, cols, 3)


def _valid_tile(file: Path, box: tuple[int, int, int, int], fmt: str) -> bool:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False).shape == _tile_shape(box, fmt)
    except (OSError, ValueError, EOFError):
        return False


def _encoded_tile(tile: np.ndarray, box: tuple[int, int, int, int], fmt: str, half: bool) -> np.ndarray:
    """The scratch values of a rendered tile [h, w, 4] (``_store_tile`` into a tile-sized scratch)."""
    shape = _tile_shape(box, fmt)
    dtype = (np.float16 if half else np.float32) if fmt == "exr" else np.uint8
    local = np.zeros(shape, dtype=dtype)
    _store_tile(local, tile, (0, tile.shape[0], 0, tile.shape[1]), fmt)
    return local


def render_panorama_sharded(model, camera, pose: np.ndarray, output: Path, options: PanoramaOptions, fmt: str,
                            spec: ShardSpec) -> tuple[list[Path], int, int]:
    """Render this process's tiles into the working folder; assemble when ``spec.assembles``. Returns (files of
    the output, tiles rendered now, peak tile bytes)."""
    boxes = tile_boxes(camera.width, camera.height, int(options.tile_size))
    mine = spec.select(len(boxes))  # a bad --frames fails before anything is written
    folder = tiles_folder(output)
    job = {"kind": "panorama", "output": Path(output).name, "format": fmt, "tiles": len(boxes),
           "pose": np.asarray(pose).tolist(), **{k: getattr(options, k) for k in JOB_OPTIONS}}
    if spec.rank == 0:
        shards.write_job(folder, job, options.overwrite)
    shards.barrier()
    if spec.rank != 0:
        shards.write_job(folder, job, overwrite=False)
    background = (0.0, 0.0, 0.0) if fmt == "exr" else (1.0, 1.0, 1.0)
    todo = [i for i in mine if options.overwrite or not _valid_tile(tile_file(folder, i), boxes[i], fmt)]
    peak = 0
    for index in tqdm(todo, desc="panorama", unit="tile", disable=not (options.progress and spec.shows_progress),
                      dynamic_ncols=True):
        tile = render_tile(model, camera, pose, boxes[index], background, options.max_rays_per_chunk)
        peak = max(peak, tile.shape[0] * tile.shape[1] * TILE_BYTES_PER_PIXEL)
        write_npy(tile_file(folder, index), _encoded_tile(tile, boxes[index], fmt, options.half), overwrite=True)
    shards.mark_done(folder, spec)
    shards.barrier()
    files = assemble_panorama(output, options.overwrite) if spec.assembles else output_files(output, options)
    return files, len(todo), peak


def assemble_panorama(output: Path, overwrite: bool = False) -> list[Path]:
    """Stitch the tiles of a sharded panorama into its output file(s) (see the module docstring); InputError
    naming the missing tiles and their shard when some are missing."""
    output = Path(output)
    folder = tiles_folder(output)
    job = shards.read_job(folder)
    shards.require(job is not None and job.get("kind") == "panorama",
                   f"{output}: no sharded panorama to assemble (no {shards.JOB_FILE} in {folder})")
    options = PanoramaOptions(**{k: job[k] for k in JOB_OPTIONS}, overwrite=overwrite, progress=False)
    camera, fmt = panorama_camera(options), job["format"]
    boxes = tile_boxes(camera.width, camera.height, int(options.tile_size))
    missing = [i for i, box in enumerate(boxes) if not _valid_tile(tile_file(folder, i), box, fmt)]
    if missing:
        raise InputError(shards.missing_message(output, "tiles", [i + 1 for i in missing],
                                                [tile_file(folder, i).name for i in missing],
                                                shards.shard_total(folder)))
    files = output_files(output, options)
    scratch_path = output.with_name(f".{output.stem}.scratch.npy")
    scratch = _open_scratch(scratch_path, fmt, camera.width, camera.height, options.half)
    try:
        for index, (row0, row1, col0, col1) in enumerate(boxes):
            tile = np.load(tile_file(folder, index), allow_pickle=False)
            if fmt == "exr":
                scratch[:, row0:row1, col0:col1] = tile
            else:
                scratch[row0:row1, col0:col1] = tile
        _write_outputs(files, scratch, camera, options, fmt)
    finally:
        del scratch
        scratch_path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    return files

