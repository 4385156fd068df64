"""``nerfstage render RUN --splats scene.ply``: the CLI's frames are the rasteriser's, equirect frames come from
cube faces and match a pinhole face, and bad input is refused (issue 16)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from nerfstage.app.cli import main
from nerfstage.core.cameras import FisheyeCamera, PerspectiveCamera
from nerfstage.core.errors import ConfigError
from nerfstage.nerf.data import read_dataparser_transforms
from nerfstage.render.equirect import EquirectangularCamera, reproject_image
from nerfstage.render.paths import read_camera_path
from nerfstage.render.splats.model import GaussianSplats
from nerfstage.render.splats.ply import write_ply
from nerfstage.render.splats.raster import SplatView, render_splats
from nerfstage.render.splats.render import dataset_from_scene, render_splat_image


def cli(*args) -> int:
    try:
        main([*map(str, args), "--quiet"])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def known_splats(scene, n: int = 300, seed: int = 0) -> GaussianSplats:
    """Coloured Gaussians filling a ball of radius 0.5 around the normalised origin, in the dataset frame."""
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.25
    world = np.eye(4)[None].repeat(n, 0)
    world[:, :3, 3] = points.numpy()
    means = np.stack([dataset_from_scene(w, scene)[:3, 3] for w in world])
    sh = torch.randn(n, 4, 3, generator=g) * 0.4
    return GaussianSplats(torch.as_tensor(means, dtype=torch.float32), torch.randn(n, 4, generator=g),
                          torch.full((n, 3), math.log(0.06 / scene.scale)) + torch.randn(n, 3, generator=g) * 0.3,
                          torch.randn(n, generator=g) + 1.0, sh)


@pytest.fixture(scope="module")
def splat_file(tiny_run, tmp_path_factory):
    scene = read_dataparser_transforms(tiny_run.run_dir / "dataparser_transforms.json")
    path = tmp_path_factory.mktemp("splats") / "scene.ply"
    splats = known_splats(scene)
    write_ply(path, splats)
    return path, splats, scene


def test_dataset_from_scene_inverts_the_scene_transform(splat_file):
    _, _, scene = splat_file
    g = np.random.default_rng(0)
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(g.normal(size=(3, 3)))[0]
    pose[:3, 3] = g.normal(size=3)
    np.testing.assert_allclose(scene.apply(dataset_from_scene(pose, scene)[None])[0], pose, atol=1e-9)


def test_cli_frames_are_the_rasteriser_called_directly(tiny_run, splat_file, tmp_path):
    ply, splats, scene = splat_file
    saved = tmp_path / "orbit.json"
    assert cli("render", tiny_run.run_dir, "--splats", ply, "-o", tmp_path / "frames", "--save-path", saved,
               "--fps", 3, "--seconds", 1, "--width", 48, "--height", 40) == 0
    path = read_camera_path(saved)
    for i in range(3):
        camera = PerspectiveCamera.from_fov(48, 40, float(path.fov_y_deg[i]))
        view = SplatView.of(camera, dataset_from_scene(path.world_from_cams[i], scene))
        direct = render_splats(splats, view, (1.0, 1.0, 1.0)).image.numpy()
        png = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / f"frame_{i + 1:05d}.png")), cv2.COLOR_BGR2RGB)
        assert np.abs(png.astype(float) - np.round(np.clip(direct, 0, 1) * 255)).max() <= 1
        assert direct.std() > 0.05  # the splats are in view, not just background


def test_equirect_frames_are_non_empty_and_match_a_cube_face(tiny_run, splat_file, tmp_path):
    ply, splats, scene = splat_file
    saved = tmp_path / "pano.json"
    assert cli("render", tiny_run.run_dir, "--splats", ply, "-o", tmp_path / "pano", "--save-path", saved,
               "--camera", "equirectangular", "--height", 128, "--fps", 1, "--seconds", 1) == 0
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "pano" / "frame_00001.png")), cv2.COLOR_BGR2RGB) / 255.0
    assert png.shape == (128, 256, 3) and (png < 0.9).any(axis=-1).mean() > 0.01  # splats drawn over white
    pose = dataset_from_scene(read_camera_path(saved).world_from_cams[0], scene)
    face = PerspectiveCamera.from_fov(64, 64, 90.0)  # the -Z (front) face
    direct = render_splats(splats, SplatView.of(face, pose), (1.0, 1.0, 1.0)).image.numpy()
    resampled = reproject_image(png.astype(np.float32), EquirectangularCamera(256, 128), face)
    assert np.abs(resampled - direct).mean() < 0.03
    assert direct.std() > 0.05


def test_fisheye_and_depth_come_through_the_faces(splat_file):
    _, splats, scene = splat_file
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 1.5]  # normalised frame: 1.5 above the ball, looking down -z at it
    fish = render_splat_image(splats, FisheyeCamera.from_fov(64, 64, 60.0), pose, scene)
    pin = render_splat_image(splats, PerspectiveCamera.from_fov(64, 64, 60.0), pose, scene)
    assert fish["alpha"].max() > 0.5 and pin["alpha"].max() > 0.5
    centre_depth = 1.5 / scene.scale  # dataset units; the ball's surface is nearer than its centre
    seen = pin["alpha"] > 0.9
    assert 0.3 * centre_depth < np.median(pin["depth"][seen]) < 1.05 * centre_depth
    np.testing.assert_allclose(fish["rgb"][30:34, 30:34], pin["rgb"][30:34, 30:34], atol=0.03)  # same focal: equal near the axis


def test_normals_and_orthographic_are_refused(splat_file):
    from nerfstage.core.cameras import OrthographicCamera

    _, splats, scene = splat_file
    with pytest.raises(ConfigError, match="normal"):
        render_splat_image(splats, PerspectiveCamera.from_fov(8, 8, 60.0), np.eye(4), scene, ("rgb", "normal"))
    with pytest.raises(ConfigError, match="orthographic"):
        render_splat_image(splats, OrthographicCamera(8, 8, 1.0), np.eye(4), scene)


def test_a_bad_splat_file_exits_2_naming_it(tiny_run, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("not a ply")
    assert cli("render", tiny_run.run_dir, "--splats", bad, "-o", tmp_path / "out", "--fps", 1, "--seconds", 1,
               "--width", 8, "--height", 8) == 2
    assert not (tmp_path / "out").exists()
