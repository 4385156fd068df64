"""Image-quality metrics of the held-out evaluation.

PSNR: ``-10 log10(MSE)`` on images in [0, 1]. SSIM: scikit-image's ``structural_similarity`` with the settings of
the NeRF papers (and torchmetrics / nerfstudio): 11x11 Gaussian window, sigma 1.5, population covariance,
data range 1, averaged over the RGB channels.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two images [H, W, 3] in [0, 1] (inf when identical)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error (colours in [0, 1])."""
    return math.inf if mse <= 0.0 else -10.0 * math.log10(mse)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two images [H, W, 3] in [0, 1] (Gaussian 11x11 window, sigma 1.5)."""
    return float(
        structural_similarity(
            np.asarray(target, np.float64),
            np.clip(np.asarray(pred, np.float64), 0.0, 1.0),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )
