"""Camera models: pixel -> ray -> pixel round trips, OpenCV agreement, thin lens, latlong and cubemap coverage."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from nerfstage.core.errors import ConfigError
from nerfstage.render.cubemap import face_cells, face_rotations
from nerfstage.render import (
    CubemapCamera,
    EquirectangularCamera,
    FisheyeCamera,
    OrthographicCamera,
    PerspectiveCamera,
    ThinLens,
    axial_factors,
    generate_ray_batch,
    generate_rays,
    pixel_centers,
    pixel_chunks,
    reproject_image,
)

DISTORTED = PerspectiveCamera(80, 60, 70.0, 72.0, 41.3, 29.1, k1=-0.21, k2=0.06, p1=0.0012, p2=-0.0021, k3=-0.01)
FISHEYE = FisheyeCamera(64, 64, 18.0, 18.5, 32.4, 31.7, k1=0.04, k2=-0.012, k3=0.002, k4=-0.0003)
CAMERAS = {
    "pinhole": PerspectiveCamera.from_fov(64, 48, 60.0),
    "opencv": DISTORTED,
    "fisheye": FISHEYE,
    "fisheye-wide": FisheyeCamera(48, 48, 8.0, 8.0, 24.0, 24.0),  # up to 172 degrees off-axis on the edges
    "orthographic": OrthographicCamera(64, 48, 2.5),
    "equirectangular": EquirectangularCamera(64, 32),
    "cubemap-cross": CubemapCamera(12, "cross"),
    "cubemap-strip": CubemapCamera(12, "strip"),
}


def _random_pixels(camera, n: int = 500, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.uniform([0, 0], [camera.width, camera.height], size=(n, 2)))


@pytest.mark.parametrize("name", list(CAMERAS))
def test_ray_through_pixel_projects_back_to_it(name):
    camera = CAMERAS[name]
    pixels = torch.cat([pixel_centers(camera, None, torch.float64), _random_pixels(camera)])
    origins, directions, valid = camera.rays(pixels)
    # invalid: unused cross cells; fisheye corners beyond 180 degrees or past the distortion polynomial's maximum
    expected_valid = {"cubemap-cross": 0.5, "fisheye": 0.963, "fisheye-wide": 0.844}.get(name, 1.0)
    assert abs(valid[: camera.num_pixels].double().mean().item() - expected_valid) < 0.005
    for distance in (0.3, 2.0, 50.0):
        projected, in_view = camera.project(origins + distance * directions)
        assert bool(in_view[valid].all())
        error = (projected - pixels).abs().amax(dim=-1)[valid]
        assert error.max().item() < 1e-3, f"{name}: reprojection error {error.max().item():.2e} px"


def test_directions_are_unit_and_world_rays_follow_the_pose():
    camera = PerspectiveCamera.from_fov(32, 24, 50.0)
    angle = 0.7
    pose = np.eye(4)  # OpenGL camera-to-world: rotate about z and move
    pose[:3, :3] = [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    pose[:3, 3] = [1.0, -2.0, 0.5]
    origins, directions = generate_rays(camera, pose, dtype=torch.float64)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(len(directions), dtype=torch.float64))
    assert torch.allclose(origins, torch.tensor(pose[:3, 3]).expand_as(origins))
    centre = generate_rays(camera, pose, torch.tensor([12 * 32 + 16]), dtype=torch.float64)[1]  # pixel at (16.5, 12.5)
    forward = -torch.tensor(pose[:3, 2])  # OpenGL cameras look along -z
    assert torch.allclose(centre[0], forward, atol=0.06)  # half a pixel off-centre
    top_left = generate_rays(camera, np.eye(4), torch.tensor([0]), dtype=torch.float64)[1][0]
    assert top_left[0] < 0 and top_left[1] > 0 and top_left[2] < 0  # left, up, forward in OpenGL axes


def test_chunked_rays_equal_whole_frame_rays():
    camera = PerspectiveCamera(40, 30, 35.0, 35.0, 20.0, 15.0, lens=ThinLens(0.05, 2.0, seed=3))
    pose = np.eye(4)
    whole = generate_ray_batch(camera, pose)
    chunks = [generate_ray_batch(camera, pose, idx) for idx in pixel_chunks(camera, 333)]
    assert sum(len(c.pixel_indices) for c in chunks) == camera.width * camera.height
    assert torch.equal(torch.cat([c.origins for c in chunks]), whole.origins)
    assert torch.equal(torch.cat([c.directions for c in chunks]), whole.directions)


def test_distortion_matches_opencv_and_round_trips():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(-0.5, 0.5, size=(300, 2)), np.ones((300, 1))], axis=1) * rng.uniform(
        0.5, 4.0, size=(300, 1)
    )
    c = DISTORTED
    k = np.array([[c.fx, 0, c.cx], [0, c.fy, c.cy], [0, 0, 1.0]])
    expected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), k, np.array([c.k1, c.k2, c.p1, c.p2, c.k3]))
    ours, _ = c.project(torch.as_tensor(points))
    assert np.abs(ours.numpy() - expected[:, 0]).max() < 1e-6
    xy = torch.as_tensor(points[:, :2] / points[:, 2:])
    undistorted, valid = c.undistort(c.distort(xy))
    assert bool(valid.all()) and (undistorted - xy).abs().max().item() < 1e-10


def test_fisheye_matches_opencv_fisheye_model():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(300, 3))
    points[:, 2] = np.abs(points[:, 2]) + 0.2  # in front: cv2.fisheye projects via atan(r / z)
    c = FISHEYE
    k = np.array([[c.fx, 0, c.cx], [0, c.fy, c.cy], [0, 0, 1.0]])
    distortion = np.array([c.k1, c.k2, c.k3, c.k4])
    expected, _ = cv2.fisheye.projectPoints(points[:, None], np.zeros(3), np.zeros(3), k, distortion)
    ours, _ = c.project(torch.as_tensor(points))
    assert np.abs(ours.numpy() - expected[:, 0]).max() < 1e-6


def test_equidistant_fisheye_angle_is_radius_over_focal():
    camera = FisheyeCamera.from_fov(64, 64, 60.0)
    pixels = _random_pixels(camera, 200, seed=4)
    directions, valid = camera.unproject(pixels)
    radius = ((pixels - torch.tensor([32.0, 32.0], dtype=torch.float64)) / camera.fx).norm(dim=-1)
    angle = torch.acos(directions[:, 2].clamp(-1, 1))
    assert bool(valid.all()) and (angle - radius).abs().max().item() < 1e-9


def test_thin_lens_rays_meet_at_the_focus_point():
    lens = ThinLens(aperture_radius=0.1, focus_distance=3.0, seed=11)
    camera = PerspectiveCamera(40, 30, 30.0, 30.0, 20.0, 15.0, lens=lens)
    pixel = torch.tensor([7 * 40 + 29])
    batches = [generate_ray_batch(camera, np.eye(4), pixel, sample=s, dtype=torch.float64) for s in range(64)]
    origins = torch.cat([b.origins for b in batches])  # world = OpenGL camera frame here
    directions = torch.cat([b.directions for b in batches])
    pinhole_direction = generate_rays(PerspectiveCamera(40, 30, 30.0, 30.0, 20.0, 15.0), np.eye(4), pixel,
                                      dtype=torch.float64)[1][0]
    focus = pinhole_direction * (3.0 / -pinhole_direction[2])  # on the plane 3 units in front (OpenGL -z)
    to_focus = focus - origins
    miss = torch.linalg.cross(to_focus, directions).norm(dim=-1)  # distance of the focus point from each ray
    assert miss.max().item() < 1e-9
    radii = origins[:, :2].norm(dim=-1)
    assert radii.max().item() <= 0.1 + 1e-12 and radii.max().item() > 0.07 and origins[:, 2].abs().max() < 1e-12
    assert len({tuple(o.tolist()) for o in origins}) == 64  # every sample draws a new lens point


def test_equirect_rays_cover_longitudes_uniformly_and_rows_step_evenly():
    camera = EquirectangularCamera(72, 36)
    directions, valid = camera.unproject(pixel_centers(camera, None, torch.float64))
    assert bool(valid.all())
    longitude = torch.atan2(directions[:, 0], directions[:, 2]).numpy()
    counts, _ = np.histogram(longitude, bins=24, range=(-math.pi, math.pi))
    assert counts.min() == counts.max() == 72 * 36 // 24
    polar = torch.acos((-directions[:, 1]).clamp(-1, 1)).reshape(36, 72)  # from straight up
    assert torch.allclose(polar[:, 0], (torch.arange(36, dtype=torch.float64) + 0.5) * math.pi / 36, atol=1e-12)
    solid_angle = (torch.sin(polar) * (math.pi / 36) * (2 * math.pi / 72)).sum().item()
    assert abs(solid_angle - 4 * math.pi) / (4 * math.pi) < 2e-3


def test_equirect_orientation_follows_nerfstudio():
    camera = EquirectangularCamera(64, 32)
    def world_direction(col: float, row: float) -> np.ndarray:  # OpenGL camera axes (identity pose)
        index = torch.tensor([int(row) * 64 + int(col)])
        return generate_rays(camera, np.eye(4), index, dtype=torch.float64)[1][0].numpy()
    assert np.allclose(world_direction(32, 16), [0, 0, -1], atol=0.1)  # centre: forward (-z)
    assert np.allclose(world_direction(48, 16), [1, 0, 0], atol=0.1)  # 3/4 across: right (+x)
    assert world_direction(32, 0)[1] > 0.99  # top row: up (+y)
    assert np.allclose(world_direction(0, 16), [0, 0, 1], atol=0.1)  # seam: behind (+z)


@pytest.mark.parametrize("layout", ["cross", "strip"])
def test_cubemap_faces_tile_the_sphere(layout):
    camera = CubemapCamera(16, layout)
    rng = np.random.default_rng(5)
    directions = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(20000, 3))), dim=-1)
    in_face = torch.einsum("kji,nj->nki", torch.as_tensor(face_rotations()), directions)  # [n, 6, 3]
    x, y, z = in_face.unbind(-1)
    inside = (z > 0) & (x.abs() < z) & (y.abs() < z)
    assert bool((inside.sum(dim=1) == 1).all())  # every direction: exactly one face, no gap, no overlap
    pixels, valid = camera.project(directions)
    face = camera.face_of(directions)
    cells = torch.as_tensor(face_cells(layout))[face]
    assert bool(valid.all()) and bool((torch.floor(pixels / 16).long() == cells).all())
    back, back_valid = camera.unproject(pixels)
    assert bool(back_valid.all()) and (back - directions).norm(dim=-1).max().item() < 1e-12
    rays, ray_valid = camera.unproject(pixel_centers(camera, None, torch.float64))
    rays = rays[ray_valid].numpy()
    assert len(rays) == 6 * 16 * 16
    nearest, _ = cKDTree(rays).query(rays, k=2)
    assert nearest[:, 1].min() > 0.02  # all face pixels see distinct directions (corner spacing ~0.04)


def test_cubemap_and_equirect_agree_on_directions():
    cube, latlong = CubemapCamera(32, "cross"), EquirectangularCamera(256, 128)
    directions, _ = latlong.unproject(pixel_centers(latlong, None, torch.float64))
    pixels, valid = cube.project(directions)
    back, _ = cube.unproject(pixels)
    assert bool(valid.all()) and (back - directions).norm(dim=-1).max().item() < 1e-12
    # an equirect "render" of a smooth function (the direction itself), resampled into the cubemap
    latlong_image = directions.reshape(128, 256, 3).numpy().astype(np.float32)
    cube_image = reproject_image(latlong_image, latlong, cube)
    cube_directions, cube_valid = cube.unproject(pixel_centers(cube, None, torch.float64))
    cube_valid = cube_valid.reshape(cube.height, cube.width).numpy()
    error = np.abs(cube_image - cube_directions.reshape(cube.height, cube.width, 3).numpy())[cube_valid]
    assert error.max() < 0.02 and error.mean() < 2e-3
    assert np.all(cube_image[~cube_valid] == 0)  # unused cross cells stay empty


def test_axial_factors_turn_ray_distance_into_z_depth():
    camera = DISTORTED
    _, directions, _ = camera.rays(pixel_centers(camera, None, torch.float64))
    plane_z = 2.5  # a wall parallel to the image plane: every pixel's z-depth is 2.5
    distance = plane_z / directions[:, 2]
    z_depth = distance.float() * axial_factors(camera)
    assert (z_depth - plane_z).abs().max().item() < 1e-5
    assert torch.equal(axial_factors(OrthographicCamera(4, 4, 1.0)), torch.ones(16))


def test_orthographic_rays_are_parallel_and_evenly_spaced():
    camera = OrthographicCamera(8, 6, view_width=4.0)
    origins, directions = generate_rays(camera, np.eye(4), dtype=torch.float64)
    assert torch.allclose(directions, torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand_as(directions))
    steps = origins.reshape(6, 8, 3)[0, 1:, 0] - origins.reshape(6, 8, 3)[0, :-1, 0]
    assert torch.allclose(steps, torch.full_like(steps, 0.5))


def test_bad_camera_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="fov"):
        PerspectiveCamera.from_fov(64, 48, 180.0)
    with pytest.raises(ConfigError, match="layout"):
        CubemapCamera(8, "sphere")
    with pytest.raises(ConfigError, match="pixel indices"):
        generate_rays(CAMERAS["pinhole"], np.eye(4), torch.tensor([64 * 48]))
    with pytest.raises(ConfigError, match="finite"):
        generate_rays(CAMERAS["pinhole"], np.full((4, 4), np.nan))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["opencv", "fisheye", "equirectangular", "cubemap-cross", "orthographic"])
def test_rays_on_cuda_match_cpu(name):
    camera, pose = CAMERAS[name], np.eye(4)
    cpu = generate_ray_batch(camera, pose, dtype=torch.float64)
    gpu = generate_ray_batch(camera, pose, dtype=torch.float64, device="cuda")
    assert gpu.directions.device.type == "cuda" and torch.equal(gpu.valid.cpu(), cpu.valid)
    assert (gpu.directions.cpu() - cpu.directions).abs().max().item() < 1e-9
