"""Distilling the tiny run's field into splats: PSNR against the teacher rises, densification grows, pruning keeps
to max_splats, Adam state follows the rows, and a seed makes it repeatable (issue 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfstage.core.errors import ConfigError
from nerfstage.export.splats_densify import DensifyStats, densify_and_prune
from nerfstage.export.splats_distill import (
    DistillOptions,
    _optimizer,
    _parameters,
    distill_splats,
    teacher_image,
    training_views,
)
from nerfstage.nerf.metrics import psnr
from nerfstage.nerf.run import load_run
from nerfstage.render.splats.model import GaussianSplats
from nerfstage.render.splats.raster import render_splats

FAST = {"densify_from": 10, "densify_every": 10, "image_side": 64, "novel_views": 4, "lr_sh_dc": 0.05,
        "lr_opacity": 0.05, "lr_scales": 0.01, "lr_sh_rest": 0.0025}
"""Learning rates raised so that a few dozen steps show progress (the defaults are 3DGS's, for thousands)."""


def random_splats(run, n: int, seed: int = 0) -> GaussianSplats:
    """Grey, faint Gaussians uniform in the normalised cube [-0.5, 0.5]^3, in the dataset frame."""
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5).numpy()
    linear, offset = run.scene.transform[:, :3], run.scene.transform[:, 3]
    means = (np.linalg.inv(linear) @ (points / run.scene.scale - offset).T).T
    return GaussianSplats(torch.tensor(means, dtype=torch.float32), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                          torch.full((n, 3), math.log(0.03 / run.scene.scale)), torch.full((n,), -2.0),
                          torch.zeros(n, 16, 3))


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run.run_dir, device="cpu")


def teacher_psnr(run, splats, views) -> float:
    return float(np.mean([psnr(render_splats(splats, v.view, (1, 1, 1)).image.clamp(0, 1).numpy(),
                               teacher_image(run, v, (1, 1, 1)).numpy()) for v in views]))


def test_psnr_against_the_teacher_rises_and_densify_grows(run):
    options = DistillOptions(steps=40, **FAST)
    start = random_splats(run, 2000)
    views = training_views(run, options)[:6]
    before = teacher_psnr(run, start, views)
    out = distill_splats(run, start, options)
    after = teacher_psnr(run, out, views)
    assert after >= before + 4.0, (before, after)  # measured: 6.7 -> 13.2 dB
    assert out.num_splats > 2000  # densification added Gaussians
    assert all(bool(torch.isfinite(getattr(out, f)).all()) for f in ("means", "quats", "log_scales", "sh"))


def test_same_seed_same_splats(run):
    options = DistillOptions(steps=6, **{**FAST, "densify_from": 2, "densify_every": 2, "image_side": 32})
    start = random_splats(run, 300, seed=1)
    a, b = distill_splats(run, start, options), distill_splats(run, start, options)
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


def synthetic_params(n: int, options: DistillOptions):
    g = torch.Generator().manual_seed(0)
    splats = GaussianSplats(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                            torch.randn(n, 3, generator=g) - 4.0, torch.randn(n, generator=g) * 3,
                            torch.randn(n, 4, 3, generator=g))
    params = _parameters(splats, options)
    optimizer = _optimizer(params, options, 1.0)
    loss = sum((p**2).sum() for p in params.values())
    loss.backward()
    optimizer.step()  # Adam state exists for every row
    return params, optimizer


def test_prune_removes_faint_and_growth_respects_max_splats():
    options = DistillOptions(max_splats=130)
    params, optimizer = synthetic_params(100, options)
    faint = int((torch.sigmoid(params["opacity_logits"].detach()) < options.prune_opacity).sum())
    assert faint > 0
    stats = DensifyStats(torch.ones(100), torch.ones(100))  # every Gaussian over the gradient threshold
    new = densify_and_prune(params, optimizer, stats, options, 1.0, torch.Generator().manual_seed(0))
    assert len(new["means"]) == 130  # grown up to the budget, not beyond
    assert (torch.sigmoid(new["opacity_logits"].detach()) >= options.prune_opacity).all()
    for group in optimizer.param_groups:  # Adam moments moved with the rows, new rows start at zero
        state = optimizer.state[group["params"][0]]
        assert state["exp_avg"].shape == group["params"][0].shape
        assert float(state["exp_avg"][-1].abs().sum()) == 0.0


def test_split_halves_scales_and_keeps_count_budget():
    options = DistillOptions(max_splats=1000, prune_opacity=0.0, dense_fraction=1e-9, prune_scale=1e9)
    params, optimizer = synthetic_params(10, options)
    stats = DensifyStats(torch.tensor([1.0] + [0.0] * 9), torch.ones(10))  # only the first one splits
    old_scale = params["log_scales"].detach()[0].clone()
    new = densify_and_prune(params, optimizer, stats, options, 1.0, torch.Generator().manual_seed(0))
    assert len(new["means"]) == 11
    torch.testing.assert_close(new["log_scales"].detach()[-1], old_scale - math.log(1.6))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="novel_fraction"):
        DistillOptions(novel_fraction=1.5)
    with pytest.raises(ConfigError, match="steps"):
        DistillOptions(steps=0)


def test_training_views_use_the_teacher_only_below_photo_weight_one(run):
    from nerfstage.export.splats_distill import _loss

    views = training_views(run, DistillOptions(image_side=32))[:2]
    image = torch.full((views[0].camera.height, views[0].camera.width, 3), 0.5)
    _loss(run, views[0], image, DistillOptions(photo_weight=1.0))
    assert views[0].teacher is None  # the photo alone: no render of the field
    mixed = _loss(run, views[1], image, DistillOptions(photo_weight=0.5))
    assert views[1].teacher is not None and float(mixed) > 0


def test_ssim_is_the_gaussian_window_ssim():
    from skimage.metrics import structural_similarity

    from nerfstage.export.splats_distill import ssim_map

    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 50, 3, generator=g)
    b = (a + 0.1 * torch.randn(40, 50, 3, generator=g)).clamp(0, 1)
    ref = structural_similarity(a.numpy(), b.numpy(), channel_axis=2, data_range=1.0, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
    assert float(ssim_map(a, b)) == pytest.approx(ref, abs=0.01)  # zero padding at the border vs skimage's crop
    assert float(ssim_map(a, a)) == pytest.approx(1.0, abs=1e-5)


def test_distorted_photo_is_resampled_into_the_pinhole_view():
    """A smooth pattern defined on undistorted normalised coordinates, photographed by an OPENCV camera with the
    fox capture's distortion: resampled into the pinhole view it matches the pattern there (bilinear error)."""
    from nerfstage.core.cameras import camera_from_intrinsics
    from nerfstage.core.geometry import Intrinsics
    from nerfstage.core.rays import pixel_centers
    from nerfstage.export.splats_distill import _pinhole, undistorted_photo

    intr = Intrinsics(137.5, 137.4, 55.5, 96.5, 108, 192, "OPENCV", k1=0.0578, k2=-0.0805, p1=-0.00098, p2=0.00016)

    def pattern(xy: torch.Tensor) -> np.ndarray:  # [n, 2] normalised -> [n, 3] uint8
        rgb = torch.stack([torch.sin(9 * xy[:, 0]), torch.cos(7 * xy[:, 1]), torch.sin(5 * (xy[:, 0] + xy[:, 1]))])
        return ((rgb.T * 0.5 + 0.5) * 255).round().numpy().astype(np.uint8)

    camera = camera_from_intrinsics(intr)
    rays, _ = camera.unproject(pixel_centers(camera, None, torch.float64))
    photo = pattern(rays[:, :2] / rays[:, 2:]).reshape(192, 108, 3)
    out, valid = undistorted_photo(photo, intr)
    pinhole = _pinhole(intr)
    rays, _ = pinhole.unproject(pixel_centers(pinhole, None, torch.float64))
    truth = pattern(rays[:, :2] / rays[:, 2:]).reshape(192, 108, 3)
    error = np.abs(out.astype(float) - truth)[valid]
    plain_error = np.abs(photo.astype(float) - truth)[valid]
    assert valid.mean() > 0.95  # a thin band at the border leaves the photo
    assert error.mean() < 0.5 and plain_error.mean() > 1.0, (error.mean(), plain_error.mean())  # 0.21 vs 1.39
    same, none = undistorted_photo(photo, Intrinsics(137.5, 137.4, 55.5, 96.5, 108, 192))
    assert none is None and same is photo  # a pinhole photo is used as it is


def test_schedule_follows_the_time_budget():
    from nerfstage.export.splats_distill import _Schedule

    timed = _Schedule(DistillOptions(steps=2000, time_budget_s=100.0, opacity_reset_every=10), 4, 2)
    assert timed.progress(10, 50.0) == pytest.approx(0.5)  # the budget, not the step count, is the clock
    assert timed.progress(1999, 1.0) == pytest.approx(1.0)
    assert timed.densifying(500, timed.progress(500, 59.0)) and not timed.densifying(500, timed.progress(500, 61.0))
    assert timed.reset_now(500, timed.progress(500, 70.0)) and not timed.reset_now(500, timed.progress(500, 81.0))
    stepped = _Schedule(DistillOptions(steps=101), 4, 2)
    assert stepped.progress(50, 1e6) == pytest.approx(0.5)  # no budget: steps alone (deterministic)
    assert not any(stepped.reset_now(s, 0.1) for s in range(101))  # no opacity reset by default


def test_size_prune_allows_far_background_its_size():
    """A Gaussian 0.5 units across: removed near the cameras (extent 1), kept 20 units away when the cameras'
    centroid is given (0.5 <= 0.1 x 20), removed there too without it (3DGS's rule)."""
    from nerfstage.export.splats_densify import prune_mask

    d = {"means": torch.tensor([[0.5, 0.0, 0.0], [20.0, 0.0, 0.0]]), "log_scales": torch.full((2, 3), math.log(0.5)),
         "opacity_logits": torch.zeros(2)}
    options = DistillOptions()
    assert prune_mask(d, options, 1.0, torch.zeros(3)).tolist() == [False, True]
    assert prune_mask(d, options, 1.0).tolist() == [False, False]
