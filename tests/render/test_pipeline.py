"""render.pipeline / render.image / nerf.run on the session's tiny trained run: training views reproduced,
depth against the synthetic scene's true geometry, equirect vs cubemap agreement, chunking, resume, colour."""

from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from nerfstage.capture.synthetic import true_depth
from nerfstage.core.cameras import PerspectiveCamera
from nerfstage.core.errors import CheckpointError
from nerfstage.core.rays import generate_ray_batch
from nerfstage.nerf.metrics import psnr
from nerfstage.nerf.run import load_run
from nerfstage.render.cubemap import CubemapCamera
from nerfstage.render.equirect import EquirectangularCamera, reproject_image
from nerfstage.render.image import ImageOptions, render_image
from nerfstage.render.pipeline import RenderOptions, encode_rgb, frame_cache, render_path
from nerfstage.render.plan import ShotOptions, build_path, look_at_center
from nerfstage.render.writers import srgb_to_linear


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run.run_dir, device="cpu")


def test_load_run_gives_eval_model_and_training_cameras(run, tiny_run):
    assert not run.model.training and run.step == tiny_run.metrics["steps"]
    assert run.world_from_cams.shape == (24, 4, 4) and len(run.intrinsics) == 24
    assert run.train_indices == [i for i in range(24) if i % 8]
    # an inward-looking capture is centred on the cameras' focus point (the least-squares look-at point), with the
    # cameras where their view at the subject's depth fills the unit box (nerf/scene_centre.py)
    assert np.linalg.norm(look_at_center(run.world_from_cams)) < 1e-3
    distances = np.linalg.norm(run.world_from_cams[:, :3, 3], axis=-1)
    print(f"camera distances from the origin {distances.min():.3f}..{distances.max():.3f}")
    assert 0.5 <= distances.min() and distances.max() <= 3.0


def test_load_run_without_checkpoint_is_a_checkpoint_error(tiny_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, broken)
    shutil.rmtree(broken / "checkpoints")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_run(broken, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path / "missing", device="cpu")


def test_interpolate_path_reproduces_a_training_image(run, tmp_path):
    # 3 frames through the first and last training cameras: frames 0 and 2 are the cameras themselves
    shot = ShotOptions(path="interpolate", max_keyframes=2, fps=3, seconds=1, width=64, height=48)
    train_poses = run.world_from_cams[run.train_indices]
    path = build_path(shot, train_poses, [run.intrinsics[i] for i in run.train_indices])
    last = run.train_indices[-1]
    np.testing.assert_allclose(path.world_from_cams[2], run.world_from_cams[last], atol=1e-9)
    result = render_path(run, tmp_path / "frames", shot, RenderOptions(progress=False), path=path)
    assert result.frames == result.rendered == 3 and (result.width, result.height) == (64, 48)
    rendered = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / "frame_00003.png")), cv2.COLOR_BGR2RGB)
    truth = cv2.cvtColor(cv2.imread(str(run.image_paths[last])), cv2.COLOR_BGR2RGB)
    score = psnr(rendered / 255.0, truth / 255.0)
    # measured 19.5 dB after 100 steps on these low-contrast thumbnails; a flat image of the mean colour scores
    # 17.7 dB and the other training images 16.7-18.9 dB (a wrong pose convention lands among those)
    assert score > 18.5, score
    flat = np.full_like(truth / 255.0, (truth / 255.0).mean())
    assert score > psnr(flat, truth / 255.0) + 1.0
    others = [psnr(rendered / 255.0, cv2.imread(str(p))[..., ::-1] / 255.0) for p in run.image_paths]
    assert int(np.argmax(others)) == last, np.round(others, 2)


def test_render_rays_are_the_training_rays(run, tiny_run):
    from nerfstage.capture.loader import load_dataset
    from nerfstage.nerf.data import load_views
    view = run.train_indices[7]
    views = load_views(load_dataset(tiny_run.dataset_dir), [view], run.scene)
    origins, directions, _ = views.view_rays(0)  # what the trainer fitted pixel by pixel
    camera = PerspectiveCamera.from_intrinsics(run.intrinsics[view])
    rays = generate_ray_batch(camera, run.world_from_cams[view])
    np.testing.assert_allclose(rays.origins.numpy(), origins.numpy(), atol=1e-6)
    np.testing.assert_allclose(rays.directions.numpy(), directions.numpy(), atol=1e-5)


class PlaneModel(torch.nn.Module):
    """Stand-in for NerfModel with a known surface: an opaque plane z = z0 (normalised frame), colour grey."""

    def __init__(self, z0: float):
        super().__init__()
        self.z0 = z0
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device, as NerfModel has

    def render_rays(self, origins, directions, image_indices=None, background=None, training=False):
        directions = directions / directions.norm(dim=-1, keepdim=True)
        t = (self.z0 - origins[:, 2]) / directions[:, 2]
        hit = torch.isfinite(t) & (t > 0)
        rgb = torch.where(hit[:, None], torch.full_like(origins, 0.5), background)
        return {"rgb": rgb, "depth": torch.where(hit, t, 0.0), "accumulation": hit.float(), "num_samples": 0}


def test_depth_of_a_known_plane_is_exact_z_depth_in_dataset_units(run):
    from nerfstage.render.paths import look_at

    height, z0, f = 0.8, -0.25, 40.0
    pose = look_at((0.1, -0.2, height), (0.1, -0.2, 0.0), up=(0.0, 1.0, 0.0))  # straight down at the plane
    camera = PerspectiveCamera(40, 30, f, f, 20.0, 15.0)
    options = ImageOptions(max_rays_per_chunk=333, depth_scale=1.0 / run.scene.scale)
    z_depth = render_image(PlaneModel(z0), camera, pose, ("depth",), options)["depth"]
    expected = (height - z0) / run.scene.scale  # the same distance in dataset units (metres here)
    np.testing.assert_allclose(z_depth, expected, rtol=1e-5)
    ray = render_image(PlaneModel(z0), camera, pose, ("depth",), ImageOptions(depth_mode="ray"))["depth"]
    u, v = np.meshgrid((np.arange(40) + 0.5 - 20.0) / f, (np.arange(30) + 0.5 - 15.0) / f)
    np.testing.assert_allclose(ray, (height - z0) * np.sqrt(1.0 + u * u + v * v), rtol=1e-5)
    normal = render_image(PlaneModel(z0), camera, pose, ("normal",))["normal"]
    np.testing.assert_allclose(normal[1:-1, 1:-1].reshape(-1, 3), [[0.0, 0.0, 1.0]] * (28 * 38), atol=1e-4)


def test_trained_run_depth_against_the_true_synthetic_surface(run, tiny_run):
    view = run.train_indices[5]
    camera = PerspectiveCamera.from_intrinsics(run.intrinsics[view])
    options = ImageOptions(depth_scale=1.0 / run.scene.scale)  # normalised units -> metres
    images = render_image(run.model, camera, run.world_from_cams[view], ("depth", "alpha"), options)
    truth = true_depth(tiny_run.capture.world_from_cams[view], tiny_run.capture.intrinsics)  # z-depth, metres
    solid = (images["alpha"] > 0.9) & np.isfinite(truth)
    relative = np.abs(images["depth"][solid] - truth[solid]) / truth[solid]
    assert solid.mean() > 0.5
    # The 100-step tiny run fits colour but not yet geometry: measured median relative error 0.50 (floaters
    # near the cameras), so only the units are checked here: depth in metres within the 8 m room, median
    # within a factor 2 of the truth (a normalised-unit depth would be 3x too small).
    ratio = np.median(images["depth"][solid]) / np.median(truth[solid])
    assert 0.5 < ratio < 2.0 and 0.2 < float(images["depth"][solid].min()) < float(images["depth"].max()) < 12.0
    assert np.median(relative) < 0.8


def test_equirect_and_cubemap_agree_where_they_overlap(run):
    pose = run.world_from_cams[run.train_indices[3]]
    equirect, cube = EquirectangularCamera(96, 48), CubemapCamera(24, "cross")
    options = ImageOptions(max_rays_per_chunk=4096)
    rgb_e = render_image(run.model, equirect, pose, ("rgb",), options)["rgb"]
    rgb_c = render_image(run.model, cube, pose, ("rgb",), options)["rgb"]
    resampled = reproject_image(rgb_c, cube, equirect, fill=np.nan)  # the cubemap seen as a latlong image
    ok = np.isfinite(resampled).all(axis=-1)
    error = np.abs(resampled[ok] - rgb_e[ok]).mean()
    # wrong orientation (latlong turned by 90 degrees of longitude) as the failing reference
    turned = np.roll(rgb_e, 24, axis=1)[ok]
    mismatch = np.abs(resampled[ok] - turned).mean()
    assert ok.mean() > 0.99
    assert error < 0.05 and error < 0.4 * mismatch, (error, mismatch)  # measured 0.02 vs 0.09


def test_chunk_size_does_not_change_the_image_and_unseen_pixels_are_background(run):
    cube = CubemapCamera(12, "cross")
    pose = run.world_from_cams[run.train_indices[0]]
    big = render_image(run.model, cube, pose, ("rgb", "alpha", "depth"), ImageOptions(max_rays_per_chunk=1 << 16))
    small = render_image(run.model, cube, pose, ("rgb", "alpha", "depth"), ImageOptions(max_rays_per_chunk=97))
    for key in big:
        np.testing.assert_allclose(big[key], small[key], atol=1e-5)
    unused = np.zeros((36, 48), bool)
    unused[:12, :12] = unused[:12, 24:] = unused[24:, :12] = unused[24:, 24:] = True  # cross corners
    assert (big["alpha"][unused] == 0).all() and (big["rgb"][unused] == 1.0).all()
    assert (big["depth"][unused] == 0).all() and big["alpha"][~unused].mean() > 0.7  # measured 0.89


def test_normals_face_the_camera_and_are_unit(run):
    view = run.train_indices[2]
    camera = PerspectiveCamera.from_intrinsics(run.intrinsics[view])
    pose = run.world_from_cams[view]
    normal = render_image(run.model, camera, pose, ("normal",))["normal"]
    length = np.linalg.norm(normal, axis=-1)
    good = length > 0
    assert good.mean() > 0.8 and np.allclose(length[good], 1.0, atol=1e-5)
    rays = generate_ray_batch(camera, pose).directions.numpy().reshape(normal.shape)
    assert (np.einsum("hwc,hwc->hw", normal, rays)[good] < 1e-6).all()  # never points away from the viewer


def test_thin_lens_blurs_only_out_of_focus(run):
    from nerfstage.core.cameras import ThinLens

    view = run.train_indices[4]
    intr = run.intrinsics[view].scaled(0.5)  # 32 x 24
    pose = run.world_from_cams[view]
    sharp = render_image(run.model, PerspectiveCamera.from_intrinsics(intr), pose, ("rgb",))["rgb"]
    tiny = PerspectiveCamera.from_intrinsics(intr, ThinLens(1e-6, 1.0))
    wide = PerspectiveCamera.from_intrinsics(intr, ThinLens(0.05, 0.3))
    options = ImageOptions(lens_samples=1)
    assert np.abs(render_image(run.model, tiny, pose, ("rgb",), options)["rgb"] - sharp).max() < 2e-3
    assert np.abs(render_image(run.model, wide, pose, ("rgb",), options)["rgb"] - sharp).mean() > 0.01


def test_colour_convention_png_direct_exr_linear():
    rgb = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    assert encode_rgb(rgb, "png").tolist() == [[[0, 128, 255]]]
    np.testing.assert_allclose(encode_rgb(rgb, "exr"), srgb_to_linear(rgb))
    assert encode_rgb(rgb, "exr")[0, 0, 1] == pytest.approx(0.2140, abs=1e-4)


def test_frames_resume_redoes_only_missing_or_damaged_frames(run, tmp_path):
    shot = ShotOptions(path="orbit", fps=3, seconds=1, width=32, height=24)
    out = tmp_path / "orbit"
    first = render_path(run, out, shot, RenderOptions(progress=False))
    assert first.rendered == 3 and sorted(p.name for p in out.iterdir()) == [f"frame_0000{i}.png" for i in (1, 2, 3)]
    data = (out / "frame_00002.png").read_bytes()
    (out / "frame_00002.png").write_bytes(data[: len(data) // 2])  # a frame cut short by a kill
    again = render_path(run, out, shot, RenderOptions(progress=False, resume=True))
    assert again.rendered == 1 and cv2.imread(str(out / "frame_00002.png")).shape == (24, 32, 3)


def test_interrupted_video_leaves_no_file_and_resumes_from_its_frame_cache(run, tmp_path, monkeypatch):
    import nerfstage.render.pipeline as pipeline

    shot = ShotOptions(path="orbit", fps=4, seconds=1, width=32, height=24)
    video = tmp_path / "orbit.mp4"
    calls = {"n": 0}
    real = pipeline.render_image

    def dies_on_third_frame(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "render_image", dies_on_third_frame)
    with pytest.raises(KeyboardInterrupt):
        render_path(run, video, shot, RenderOptions(progress=False))
    assert not video.exists() and not list(tmp_path.glob(".orbit.partial*"))
    assert len(list(frame_cache(video).glob("*.png"))) == 2
    monkeypatch.setattr(pipeline, "render_image", real)
    result = render_path(run, video, shot, RenderOptions(progress=False, resume=True))
    assert result.rendered == 2 and result.frames == 4 and not frame_cache(video).exists()
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert math.isclose(capture.get(cv2.CAP_PROP_FPS), 4.0)
