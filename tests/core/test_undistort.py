"""core.cameras: dataset cameras (Intrinsics) -> camera models, and their undistortion against OpenCV's
``undistortPoints`` / ``fisheye.undistortPoints`` (the reference the training table used before)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from nerfstage.core.cameras import FisheyeCamera, PerspectiveCamera, ThinLens, camera_from_intrinsics
from nerfstage.core.errors import ConfigError
from nerfstage.core.geometry import Intrinsics
from nerfstage.core.rays import pixel_centers

PHONE = Intrinsics(1375.5, 1374.5, 554.6, 965.3, 1080, 1920, "OPENCV", k1=0.0578, k2=-0.0805, p1=-0.00098,
                   p2=0.000156)  # instant-ngp's fox capture
STRONG = Intrinsics(70.0, 72.0, 41.3, 29.1, 80, 60, "OPENCV", k1=-0.21, k2=0.06, p1=0.0012, p2=-0.0021, k3=-0.01)
FISHEYE = Intrinsics(30.0, 30.5, 32.4, 31.7, 64, 64, "OPENCV_FISHEYE", k1=0.04, k2=-0.012, k3=0.002, k4=-0.0003)
CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-15)


def opencv_points(intr: Intrinsics, pixels: np.ndarray) -> np.ndarray:
    """[n, 2] normalised undistorted coordinates of ``pixels`` [n, 2] by OpenCV (float64)."""
    if intr.model == "OPENCV_FISHEYE":
        dist = np.array([intr.k1, intr.k2, intr.k3, intr.k4])
        return cv2.fisheye.undistortPoints(pixels[:, None], intr.matrix(), dist, criteria=CRITERIA)[:, 0]
    dist = np.array([intr.k1, intr.k2, intr.p1, intr.p2, intr.k3])
    return cv2.undistortPoints(pixels[:, None], intr.matrix(), dist, criteria=CRITERIA)[:, 0]


@pytest.mark.parametrize("intr", [PHONE, STRONG, FISHEYE], ids=["phone", "strong", "fisheye"])
def test_unproject_matches_opencv_undistort_points(intr):
    camera = camera_from_intrinsics(intr)
    step = max(1, intr.width * intr.height // 20000)  # every pixel of the small cameras, a lattice of the phone
    indices = torch.arange(0, intr.width * intr.height, step)
    pixels = pixel_centers(camera, indices, torch.float64)  # [n, 2]
    directions, valid = camera.unproject(pixels)
    assert valid.all() and torch.allclose(directions.norm(dim=-1), torch.ones(len(indices), dtype=torch.float64))
    ours = (directions[:, :2] / directions[:, 2:]).numpy()
    expected = opencv_points(intr, pixels.numpy())
    assert np.abs(ours - expected).max() < 1e-9
    assert np.abs(expected - (pixels.numpy() - [intr.cx, intr.cy]) / [intr.fx, intr.fy]).max() > 5e-3  # distorted


def test_fisheye_beyond_90_degrees_keeps_its_true_direction():
    """Where OpenCV's x/z breaks (theta >= 90 degrees: it returns mirrored or clamped points) the model's unit
    directions stay right: they project back onto their pixel and point behind the image plane."""
    wide = Intrinsics(8.0, 8.0, 16.0, 12.0, 32, 24, "OPENCV_FISHEYE", k1=0.01)  # corners ~146 degrees off-axis
    camera = camera_from_intrinsics(wide)
    pixels = pixel_centers(camera, None, torch.float64)
    directions, valid = camera.unproject(pixels)
    assert valid.all() and (directions[:, 2] < 0).sum() > 50
    back, ok = camera.project(directions)
    assert ok.all() and (back - pixels).abs().max() < 1e-9


def test_camera_from_intrinsics_picks_the_model():
    pinhole = Intrinsics(50.0, 51.0, 20.0, 15.0, 40, 30)
    assert camera_from_intrinsics(pinhole) == PerspectiveCamera(40, 30, 50.0, 51.0, 20.0, 15.0)
    assert camera_from_intrinsics(STRONG) == PerspectiveCamera.from_intrinsics(STRONG)
    assert camera_from_intrinsics(FISHEYE) == FisheyeCamera(64, 64, 30.0, 30.5, 32.4, 31.7, 0.04, -0.012, 0.002,
                                                            -0.0003)
    lens = ThinLens(0.01, 2.0)
    assert camera_from_intrinsics(pinhole, lens).lens == lens
    with pytest.raises(ConfigError, match="thin lens needs a PINHOLE or OPENCV camera"):
        camera_from_intrinsics(FISHEYE, lens)
