"""Image sharpness for frame selection: variance of the Laplacian on a downscaled grayscale copy.

The Laplacian (3x3 kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``) responds to edges; motion blur and defocus
remove them, so a blurred frame has a low variance. Frames are compared at a fixed working size whose longest
side is ``SHARPNESS_MAX_SIDE`` pixels (never enlarged): that keeps the cost per frame well under a millisecond
for any video resolution, while blur of a few pixels at 1080p still shows at that scale. Scores are only
comparable between images of the same working size (e.g. the frames of one video).
"""

from __future__ import annotations

import cv2
import numpy as np

SHARPNESS_MAX_SIDE = 640
"""Longest side (pixels) of the grayscale copy the sharpness of a frame is measured on."""


def laplacian_variance(gray: np.ndarray) -> float:  # gray [H, W] uint8 or float
    """Variance of the 3x3 Laplacian of a grayscale image, in the squared units of its pixel values."""
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[2] == 1:
        gray = gray[..., 0]
    if gray.ndim != 2 or min(gray.shape) < 3:
        raise ValueError(f"laplacian_variance expects a [H, W] grayscale image of at least 3x3, got {gray.shape}")
    if gray.dtype == np.uint8:
        laplacian = cv2.Laplacian(gray, cv2.CV_16S)  # exact for uint8 (|value| <= 1020)
    else:
        laplacian = cv2.Laplacian(np.asarray(gray, dtype=np.float64), cv2.CV_64F)
    _, std = cv2.meanStdDev(laplacian)
    return float(std[0, 0]) ** 2


def sharpness_size(width: int, height: int, max_side: int = SHARPNESS_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the working copy: longest side ``max_side``, aspect kept, never enlarged."""
    scale = min(1.0, max_side / max(width, height))
    return max(3, round(width * scale)), max(3, round(height * scale))


def gray_sharpness(gray: np.ndarray, max_side: int = SHARPNESS_MAX_SIDE) -> float:  # gray [H, W]
    """Laplacian variance of a grayscale image after shrinking it (INTER_AREA) to the working size."""
    height, width = gray.shape[:2]
    size = sharpness_size(width, height, max_side)
    if size != (width, height):
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return laplacian_variance(gray)


def image_sharpness(image: np.ndarray, max_side: int = SHARPNESS_MAX_SIDE) -> float:  # [H, W, 3] BGR or [H, W]
    """Sharpness score of a colour (BGR) or grayscale image, as used to pick video frames."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return gray_sharpness(image, max_side)
