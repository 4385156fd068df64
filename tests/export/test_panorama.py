"""360 plates from the tiny trained run: tiles stitch to the single-pass render exactly, cube faces agree with the
latlong where they overlap (and their GL file naming), EXR header and channels, pose conventions, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nerfstage.core.errors import ConfigError, InputError, OutputExistsError
from nerfstage.export import panorama as pano
from nerfstage.export.panorama import PanoramaOptions, estimate_memory, export_panorama, panorama_pose
from nerfstage.render.cubemap import CubemapCamera
from nerfstage.render.equirect import EquirectangularCamera, reproject_image
from nerfstage.render.image import ImageOptions, render_image
from nerfstage.render.writers import read_exr, srgb_to_linear


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def rgba(path) -> np.ndarray:  # [H, W, 4] as stored
    channels, _ = read_exr(path)
    return np.stack([channels[c] for c in "RGBA"], axis=-1)


def quiet(**kw) -> PanoramaOptions:
    return PanoramaOptions(progress=False, **kw)


def test_tiles_stitch_to_the_single_pass_render_exactly_with_colour_space_header(loaded, tmp_path):
    tiled = export_panorama(loaded, tmp_path / "tiled.exr", quiet(width=32, tile_size=12, max_rays_per_chunk=100))
    whole = export_panorama(loaded, tmp_path / "whole.exr", quiet(width=32, tile_size=0))
    assert (tiled.width, tiled.height, tiled.tiles, whole.tiles) == (32, 16, 6, 1)  # 3 x 2 tiles, edges partial
    a, b = rgba(tiled.files[0]), rgba(whole.files[0])
    assert a.dtype == np.float16 and a.shape == (16, 32, 4)
    assert np.array_equal(a, b), f"max difference {np.abs(a.astype(float) - b).max()}"
    # the same pixels as the render stage's equirectangular camera (single pass, black background)
    ref = render_image(loaded.model, EquirectangularCamera(32, 16), tiled.world_from_cam, ("rgb", "alpha"),
                       ImageOptions(max_rays_per_chunk=1 << 14, background=(0.0, 0.0, 0.0)))
    assert np.array_equal(a[..., :3], srgb_to_linear(ref["rgb"]).astype(np.float16))
    assert np.array_equal(a[..., 3], ref["alpha"].astype(np.float16))
    assert 0.2 < float(a[..., 3].mean()) <= 1.0 and float(a[..., :3].std()) > 0.01  # a real, non-constant render
    _, header = read_exr(tiled.files[0])
    np.testing.assert_allclose(header["chromaticities"], (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
                               atol=1e-6)
    assert header["colorSpace"] == "lin_rec709" and "LATLONG" in str(header["envmap"]).upper()
    assert "tiled" in str(header["type"]).lower()
    assert not list(tmp_path.glob(".*"))  # no scratch or temp file left


def test_cube_faces_agree_with_the_latlong_and_follow_the_gl_naming(loaded, tmp_path):
    """The six files, put back into render.cubemap's face order (posz = -Z front, negz = +Z back), resample to the
    latlong render; swapping posz/negz (the wrong convention) does not."""
    latlong = rgba(export_panorama(loaded, tmp_path / "ll.exr", quiet(width=64)).files[0]).astype(np.float32)
    six = export_panorama(loaded, tmp_path / "cube.exr", quiet(width=64, layout="cubemap", cubemap_layout="six"))
    assert [f.name for f in six.files] == [f"cube_{n}.exr" for n in ("posx", "negx", "posy", "negy", "posz", "negz")]
    faces = {f.stem.split("_")[1]: rgba(f).astype(np.float32) for f in six.files}
    assert all(face.shape == (16, 16, 4) for face in faces.values())

    def error(order: tuple[str, ...]) -> float:
        strip = np.concatenate([faces[name] for name in order], axis=1)  # render.cubemap FACE_NAMES order
        back = reproject_image(strip, CubemapCamera(16, "strip"), EquirectangularCamera(64, 32))
        return float(np.abs(back[4:-4, :, :3] - latlong[4:-4, :, :3]).mean())  # poles: few face pixels

    right, swapped = error(("posx", "negx", "posy", "negy", "negz", "posz")), error(
        ("posx", "negx", "posy", "negy", "posz", "negz"))
    assert right < 0.05 and swapped > 2 * right, f"mean error {right:.4f}, swapped +-Z {swapped:.4f}"
    cross = export_panorama(loaded, tmp_path / "cross.exr", quiet(width=64, layout="cubemap", cubemap_layout="cross"))
    image = rgba(cross.files[0])
    assert (cross.width, cross.height) == (64, 48)
    np.testing.assert_allclose(image[16:32, 16:32], faces["posz"], atol=1e-3)  # front face in the middle
    np.testing.assert_allclose(image[0:16, 16:32], faces["posy"], atol=1e-3)  # up above it
    assert float(image[0:16, 0:16, 3].max()) == 0.0  # unused cell: alpha 0


def test_png_is_8_bit_srgb_and_existing_files_need_overwrite(loaded, tmp_path):
    import cv2

    out = tmp_path / "plate.png"
    result = export_panorama(loaded, out, quiet(width=16))
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and image.shape == (8, 16, 3) and result.files == [out]
    with pytest.raises(OutputExistsError):
        export_panorama(loaded, out, quiet(width=16))
    export_panorama(loaded, out, quiet(width=16, overwrite=True))


def test_pose_from_position_camera_and_head_angles(loaded):
    scene = loaded.scene
    point = np.array([0.3, -0.2, 1.1])
    pose = panorama_pose(loaded, quiet(position=tuple(point)))
    np.testing.assert_allclose(pose[:3, 3], scene.scale * (scene.transform[:, :3] @ point + scene.transform[:, 3]))
    np.testing.assert_allclose(-pose[:3, 2], [0.0, 1.0, 0.0], atol=1e-12)  # level default looks along +Y
    turned = panorama_pose(loaded, quiet(yaw=90.0))
    np.testing.assert_allclose(-turned[:3, 2], [-1.0, 0.0, 0.0], atol=1e-12)  # yaw +90: left (counter-clockwise)
    cam = loaded.world_from_cams[5]
    np.testing.assert_allclose(panorama_pose(loaded, quiet(camera_index=5)), cam, atol=1e-12)
    tilted = panorama_pose(loaded, quiet(camera_index=5, pitch=30.0))
    cos = float(np.dot(-tilted[:3, 2], -cam[:3, 2]))
    assert cos == pytest.approx(math.cos(math.radians(30.0)), abs=1e-9)
    assert np.dot(-tilted[:3, 2], cam[:3, 1]) > 0  # pitched up, towards the camera's up
    with pytest.raises(ConfigError, match="camera_index=999"):
        panorama_pose(loaded, quiet(camera_index=999))


def test_bad_input_is_refused_before_rendering_and_failures_leave_nothing(loaded, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown panorama extension"):
        export_panorama(loaded, tmp_path / "p.tif", quiet(width=16))
    with pytest.raises(ConfigError, match="memory budget"):
        export_panorama(loaded, tmp_path / "big.exr", quiet(width=16384, tile_size=0))
    assert estimate_memory(16384, 8192, quiet()) < 4 << 30  # tiled, 16K fits the default budget
    assert estimate_memory(16384, 8192, quiet(tile_size=0)) > 4 << 30
    with pytest.raises(ConfigError, match="layout"):
        export_panorama(loaded, tmp_path / "p.exr", quiet(width=16, layout="mirrorball"))  # type: ignore[arg-type]
    calls, original = [], pano.render_tile

    def failing_tile(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated failure in the second tile")
        return original(*args, **kwargs)

    monkeypatch.setattr(pano, "render_tile", failing_tile)
    with pytest.raises(RuntimeError):
        export_panorama(loaded, tmp_path / "half.exr", quiet(width=32, tile_size=8))
    assert list(tmp_path.iterdir()) == []  # no output, no temp, no scratch


def test_tile_boxes_cover_every_pixel_once():
    boxes = pano.tile_boxes(100, 37, 16)
    cover = np.zeros((37, 100), int)
    for r0, r1, c0, c1 in boxes:
        cover[r0:r1, c0:c1] += 1
    assert cover.min() == cover.max() == 1 and len(boxes) == 7 * 3


def test_exr_carries_a_box_filtered_mip_chain_with_level_0_bit_exact(loaded, tmp_path):
    import OpenImageIO as oiio

    mip = export_panorama(loaded, tmp_path / "mip.exr", quiet(width=64, tile_size=24))
    flat = export_panorama(loaded, tmp_path / "flat.exr", quiet(width=64, mipmap=False))
    level0 = rgba(mip.files[0])
    assert np.array_equal(level0, rgba(flat.files[0]))  # readers that ignore levels see the same plate
    _, header = read_exr(mip.files[0])
    assert "MIPMAP" in str(header["tiles"].mode).upper() and header["tiles"].xSize == pano.EXR_TILE
    assert header["colorSpace"] == "lin_rec709" and "LATLONG" in str(header["envmap"]).upper()
    assert header["wrapmodes"] == "periodic,clamp"
    assert "ONE_LEVEL" in str(read_exr(flat.files[0])[1]["tiles"].mode).upper()
    source = oiio.ImageInput.open(str(mip.files[0]))
    sizes, levels = [], []
    while source.seek_subimage(0, len(sizes)):
        spec = source.spec()
        sizes.append((spec.width, spec.height))
        levels.append(source.read_image(oiio.FLOAT))  # [h, w, 4]
    source.close()
    assert sizes == [(64, 32), (32, 16), (16, 8), (8, 4), (4, 2), (2, 1), (1, 1)]
    np.testing.assert_array_equal(levels[0], level0.astype(np.float32))
    for fine, coarse in zip(levels[:-1], levels[1:]):  # each level is the 2 x 2 box mean of the one above it
        h, w = coarse.shape[:2]
        box = fine.reshape(h, fine.shape[0] // h, w, fine.shape[1] // w, 4).mean(axis=(1, 3))
        np.testing.assert_allclose(coarse, box, rtol=2e-3, atol=2e-3)
    assert float(levels[1].std()) > 0.01  # a real image, not a constant


def test_a_failing_cube_face_leaves_none_of_the_six_files(loaded, tmp_path, monkeypatch):
    from nerfstage.export import panorama_io  # the EXR writer moved there (issue 17 split panorama.py)

    calls, original = [], panorama_io._write_exr_file

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(panorama_io, "_write_exr_file", failing_write)
    with pytest.raises(InputError, match="cannot write"):
        export_panorama(loaded, tmp_path / "cube.exr", quiet(width=32, layout="cubemap"))
    assert len(calls) == 4 and list(tmp_path.iterdir()) == []  # three faces were written, none was kept


def test_a_full_disk_is_refused_before_rendering_and_leaves_nothing(tiny_run, tmp_path, monkeypatch):
    """The scratch image's blocks are reserved up front (a sparse memmap would die of SIGBUS on a full disk):
    ENOSPC there is one clean InputError, before any tile renders, with no scratch file and no output left."""
    import errno
    import os

    from nerfstage.core.errors import InputError
    from nerfstage.export import panorama
    from nerfstage.nerf.run import load_run

    run = load_run(tiny_run.run_dir, device="cpu")
    reserved = []

    def full_disk(fd, offset, length):
        reserved.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_tile(*args, **kwargs):
        raise AssertionError("rendered a tile although the disk is full")

    monkeypatch.setattr(os, "posix_fallocate", full_disk)
    monkeypatch.setattr(panorama, "render_tile", no_tile)
    out = tmp_path / "plates"
    out.mkdir()
    with pytest.raises(InputError, match="No space left on device"):
        panorama.export_panorama(run, out / "plate.exr", panorama.PanoramaOptions(width=64, progress=False))
    assert reserved and reserved[0] >= 4 * 64 * 32 * 2  # the whole half-float RGBA image was asked for
    assert list(out.iterdir()) == []
