"""The files of ``export panorama``: the on-disk scratch image tiles are stored into, and the EXR / PNG writers
(tiled, colour-space tagged, mip-mapped through OpenImageIO). See ``panorama.py``'s docstring for the formats."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InputError
from ..render.pipeline import encode_rgb
from ..render.writers import REC709_CHROMATICITIES, atomic_output, commit_output, prepare_output, write_png

if TYPE_CHECKING:
    from .panorama import PanoramaOptions

CUBE_FILE_FACES = (("posx", 0), ("negx", 1), ("posy", 2), ("negy", 3), ("posz", 5), ("negz", 4))
"""(file suffix, index into ``render.cubemap.FACE_NAMES``) of the six files: GL convention, +Z/-Z swapped."""
EXR_TILE = 256
"""Tile size of the tiled EXR files written."""
LIN_REC709 = "lin_rec709"
"""``colorSpace`` header value of the EXR files (OCIO / ACES config role name of scene-linear Rec.709)."""


def _open_scratch(path: Path, fmt: str, width: int, height: int, half: bool) -> np.ndarray:
    """The on-disk image the tiles are written into: EXR planes [4, H, W] (float16 / float32) or PNG [H, W, 3]
    uint8."""
    if fmt == "exr":
        shape, dtype = (4, height, width), np.float16 if half else np.float32
    else:
        shape, dtype = (height, width, 3), np.uint8
    try:
        scratch = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        reserve_space(path)
    except OSError as exc:
        Path(path).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot create the panorama's scratch file ({exc.strerror or exc}); "
                         "check the output folder is writable and has room") from exc
    return scratch


def reserve_space(path: Path) -> None:
    """Allocate every block of the (sparse) file at ``path`` now, so a full disk is an ``OSError`` (ENOSPC) here
    and not a SIGBUS when a memory-mapped page is first written. Filesystems without ``posix_fallocate``
    support (EOPNOTSUPP / EINVAL) are left as they are."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise


def _store_tile(scratch: np.ndarray, tile: np.ndarray, box: tuple[int, int, int, int], fmt: str) -> None:
    """Encode a rendered tile [h, w, 4] (sRGB-encoded rgb, alpha) into the scratch image at ``box``."""
    row0, row1, col0, col1 = box
    if fmt == "exr":
        linear = encode_rgb(tile[..., :3], "exr")  # [h, w, 3] scene-linear
        scratch[:3, row0:row1, col0:col1] = linear.transpose(2, 0, 1)
        scratch[3, row0:row1, col0:col1] = tile[..., 3]
    else:
        scratch[row0:row1, col0:col1] = encode_rgb(tile[..., :3], "png")


def _exr_header(envmap: bool) -> dict:
    """Header attributes of our EXR files, OpenEXR-package style (compression, colour space, envmap, tiles)."""
    import OpenEXR  # heavy: OpenEXR (only when EXR files are read or written)


    header = {"compression": OpenEXR.ZIP_COMPRESSION, "chromaticities": REC709_CHROMATICITIES,
              "colorSpace": LIN_REC709, "type": OpenEXR.scanlineimage}
    if hasattr(OpenEXR, "TileDescription"):  # tiled when this OpenEXR can write tiles (3.3+)
        tiles = OpenEXR.TileDescription()
        tiles.xSize, tiles.ySize, tiles.mode = EXR_TILE, EXR_TILE, OpenEXR.ONE_LEVEL
        header |= {"type": OpenEXR.tiledimage, "tiles": tiles}
    if envmap:
        header["envmap"] = OpenEXR.ENVMAP_LATLONG
    return header


def _write_mipmapped(tmp: Path, planes: np.ndarray, envmap: bool) -> None:
    """RGBA planes [4, H, W] -> tiled MIPMAP_LEVELS EXR at ``tmp`` (OpenImageIO make_texture, plain-texture mode:
    level 0 bit-exact, 2 x 2 box-filtered levels) with our colour-space tags."""
    import OpenImageIO as oiio  # heavy: OpenImageIO (only for mip-mapped EXR)


    pixels = np.ascontiguousarray(np.moveaxis(planes, 0, -1))  # [H, W, 4] interleaved
    source = oiio.ImageBuf(pixels)
    del pixels
    config = oiio.ImageSpec()
    config.tile_width = config.tile_height = EXR_TILE
    config.format = oiio.HALF if planes.dtype == np.float16 else oiio.FLOAT
    config.attribute("compression", "zip")
    config.attribute("colorSpace", LIN_REC709)
    config.attribute("chromaticities", oiio.TypeDesc("float[8]"), tuple(REC709_CHROMATICITIES))
    config.attribute("textureformat", "LatLong Environment" if envmap else "Plain Texture")
    config.attribute("wrapmodes", "periodic,clamp" if envmap else "clamp,clamp")
    config.attribute("maketx:filtername", "box")
    config.attribute("maketx:forcefloat", 0)  # keep half data half (less memory); levels still box-filtered
    if not oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, source, str(tmp), config):
        raise OSError(f"OpenImageIO could not write a mip-mapped EXR: {oiio.geterror() or 'no reason given'}")


def write_rgba_exr(path: Path, planes: np.ndarray, envmap: bool, overwrite: bool = False,
                   mipmap: bool = False) -> Path:
    """Write RGBA planes [4, H, W] (scene-linear, float16 or float32) as a tiled ZIP EXR with the colour-space
    header (Rec.709 chromaticities, ``colorSpace``) and, for latlong images, ``envmap``; with ``mipmap`` the
    full mip chain; atomically."""
    with atomic_output(path, overwrite) as tmp:
        _write_exr_file(tmp, planes, envmap, mipmap)
    return Path(path)


def _write_exr_file(tmp: Path, planes: np.ndarray, envmap: bool, mipmap: bool) -> None:
    """Write the EXR into ``tmp`` (no atomic rename): OpenImageIO for mip maps, the OpenEXR package otherwise."""
    import OpenEXR  # heavy: OpenEXR (only when EXR files are read or written)

    if mipmap:
        _write_mipmapped(tmp, planes, envmap)
        return
    channels = {name: np.ascontiguousarray(planes[i]) for i, name in enumerate("RGBA")}
    OpenEXR.File(_exr_header(envmap), channels).write(str(tmp))


def _write_outputs(files: list[Path], scratch: np.ndarray, camera, options: PanoramaOptions, fmt: str) -> None:
    """Write the finished scratch image into the output file(s) (six cube faces split from the strip). Every
    file goes to its temp name first; the final names appear only once all files are complete."""
    six = len(files) == 6
    size = getattr(camera, "face_size", 0)
    temps = [prepare_output(path, options.overwrite) for path in files]
    try:
        for k, tmp in enumerate(temps):
            cols = slice(CUBE_FILE_FACES[k][1] * size, (CUBE_FILE_FACES[k][1] + 1) * size) if six else slice(None)
            if fmt == "exr":
                _write_exr_file(tmp, scratch[:, :, cols], options.layout == "latlong", options.mipmap)
            else:
                write_png(tmp, np.ascontiguousarray(scratch[:, cols]), overwrite=True)
        for tmp, path in zip(temps, files):
            commit_output(tmp, path)
    except OSError as exc:
        raise InputError(f"{files[0]}: cannot write ({exc.strerror or exc}); check the folder is writable") from exc
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
