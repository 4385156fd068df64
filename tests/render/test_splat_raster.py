"""The splat rasteriser: C++ kernel vs the pure-torch reference (values and gradients), an analytic footprint, the
camera convention, culling and the backend choice (issue 16)."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from nerfstage.render.splats import raster
from nerfstage.render.splats.model import GaussianSplats
from nerfstage.render.splats.raster import RasterOptions, SplatView, render_splats

from nerfstage.core.errors import ConfigError

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def look_from(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[4, 4] world_from_cam, OpenGL axes (looks down -z), world +z up."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = right, up, back, eye
    return out


def scene(n: int, degree: int, seed: int) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(torch.randn(n, 3, generator=g) * 0.6, torch.randn(n, 4, generator=g),
                          torch.randn(n, 3, generator=g) * 0.4 - 2.2, torch.randn(n, generator=g) * 1.5,
                          torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3)


def view(width=45, height=37) -> SplatView:
    return SplatView(look_from((0.3, -3.0, 0.8)), 40.0, 42.0, width / 2 + 1.5, height / 2 - 2.0, width, height)


def render_with_grads(splats: GaussianSplats, backend: str, weights, depth=False):
    leaves = GaussianSplats(*(getattr(splats, f).clone().requires_grad_(True) for f in FIELDS))
    out = render_splats(leaves, view(), (0.2, 0.5, 0.9), RasterOptions(backend=backend), depth=depth)
    loss = (out.image * weights[0]).sum() + (out.alpha * weights[1]).sum()
    if depth:
        loss = loss + (out.depth * weights[1]).sum()
    loss.backward()
    return out, {f: getattr(leaves, f).grad for f in FIELDS}


@pytest.mark.parametrize(("n", "degree", "seed"), [(40, 3, 0), (120, 1, 1), (25, 0, 2)])
def test_cpp_matches_torch_reference_values_and_gradients(n, degree, seed):
    """Tolerance: values 1e-5 absolute; gradients 1e-3 relative to the largest entry of each field (float32
    sums in a different order)."""
    splats = scene(n, degree, seed)
    g = torch.Generator().manual_seed(seed + 10)
    weights = (torch.randn(37, 45, 3, generator=g), torch.randn(37, 45, generator=g))
    ref, ref_grads = render_with_grads(splats, "torch", weights, depth=True)
    cpp, cpp_grads = render_with_grads(splats, "cpp", weights, depth=True)
    assert int((ref.radii > 0).sum()) > n // 3  # the scene is mostly in view
    assert float(ref.alpha.detach().max()) > 0.5
    torch.testing.assert_close(cpp.image, ref.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(cpp.alpha, ref.alpha, atol=1e-5, rtol=0)
    torch.testing.assert_close(cpp.depth, ref.depth, atol=1e-4, rtol=0)
    for name in FIELDS:
        scale = float(ref_grads[name].abs().max())
        assert scale > 0, name
        torch.testing.assert_close(cpp_grads[name], ref_grads[name], atol=1e-3 * scale, rtol=0, msg=name)


def test_early_termination_and_alpha_clamp_match():
    """Opaque, overlapping Gaussians: transmittance hits the 1e-4 stop and alphas the 0.99 clamp."""
    splats = scene(60, 1, 5)
    splats.opacity_logits = splats.opacity_logits.abs() + 6.0
    splats.log_scales = splats.log_scales + 1.0
    weights = (torch.ones(37, 45, 3), torch.ones(37, 45))
    ref, ref_grads = render_with_grads(splats, "torch", weights)
    cpp, cpp_grads = render_with_grads(splats, "cpp", weights)
    assert float((ref.alpha.detach() > 0.999).float().mean()) > 0.3  # many pixels reach the 1e-4 stop
    torch.testing.assert_close(cpp.image, ref.image, atol=1e-5, rtol=0)
    for name in FIELDS:
        scale = float(ref_grads[name].abs().max()) + 1e-12
        torch.testing.assert_close(cpp_grads[name], ref_grads[name], atol=1e-3 * scale, rtol=0, msg=name)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_single_isotropic_gaussian_footprint_is_analytic(backend):
    """A round Gaussian (sigma 0.05) 2 units in front of the camera: alpha at r pixels from its image is
    o exp(-r^2 / 2 s^2), s^2 = (f sigma / z)^2 + 0.3, centred on the principal point."""
    sigma, z, f, opacity = 0.05, 2.0, 100.0, 0.8
    splats = GaussianSplats(torch.tensor([[0.0, 0.0, -z]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                            torch.full((1, 3), math.log(sigma)), torch.tensor([math.log(opacity / (1 - opacity))]),
                            torch.zeros(1, 1, 3))
    v = SplatView(np.eye(4), f, f, 32.0, 32.0, 64, 64)  # OpenGL camera at the origin looking down -z
    out = render_splats(splats, v, (0.0, 0.0, 0.0), RasterOptions(backend=backend))
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    r2 = (xs - 32.0) ** 2 + (ys - 32.0) ** 2
    s2 = (f * sigma / z) ** 2 + 0.3
    expected = opacity * torch.exp(-0.5 * r2 / s2)
    inside = expected >= 1.0 / 255.0
    assert out.radii[0] == math.ceil(3 * math.sqrt(s2))
    torch.testing.assert_close(out.alpha[inside], expected[inside], atol=1e-5, rtol=1e-5)
    assert float(out.alpha[~inside].max()) == 0.0
    torch.testing.assert_close(out.image[..., 0], out.alpha * 0.5, atol=1e-6, rtol=0)  # SH 0 -> grey 0.5


def test_convention_point_right_and_up_lands_right_and_up():
    """OpenGL world_from_cam: a Gaussian to the camera's right (+x) and up (+y) lands at column > cx, row < cy."""
    splats = GaussianSplats(torch.tensor([[0.3, 0.2, -2.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                            torch.full((1, 3), math.log(0.02)), torch.tensor([3.0]), torch.zeros(1, 1, 3))
    out = render_splats(splats, SplatView(np.eye(4), 100.0, 100.0, 32.0, 32.0, 64, 64), (0, 0, 0))
    row, col = divmod(int(out.alpha.reshape(-1).argmax()), 64)
    assert (col + 0.5, row + 0.5) == pytest.approx((32.0 + 100 * 0.3 / 2, 32.0 - 100 * 0.2 / 2), abs=1.0)


def test_behind_camera_and_empty_views_give_the_background():
    splats = GaussianSplats(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                            torch.zeros(1, 3), torch.tensor([5.0]), torch.zeros(1, 1, 3))
    for backend in ("torch", "cpp"):
        out = render_splats(splats, SplatView(np.eye(4), 50.0, 50.0, 16.0, 16.0, 33, 32), (0.1, 0.2, 0.3),
                            RasterOptions(backend=backend))
        assert int(out.radii[0]) == 0
        assert float(out.alpha.abs().max()) == 0.0
        torch.testing.assert_close(out.image, torch.tensor([0.1, 0.2, 0.3]).expand(32, 33, 3))


def test_backend_choice():
    assert raster.choose_backend("torch", torch.device("cpu")) == "torch"
    assert raster.choose_backend("auto", torch.device("cpu")) == "cpp"
    with pytest.raises(ConfigError, match="backend='fast'"):
        raster.choose_backend("fast", torch.device("cpu"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gsplat needs CUDA"):
        raster.choose_backend("gsplat", torch.device("cpu"))


def test_importing_the_rasteriser_builds_nothing():
    code = ("import nerfstage.render.splats.raster as r, nerfstage\n"
            "assert r.CPP.module is None and r.PROJECT.module is None and r.GSPLAT.module is None\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat path needs CUDA")
def test_gsplat_matches_cpp():
    pytest.importorskip("gsplat")
    splats = scene(40, 3, 0)
    cpu = render_splats(splats, view(), (0.2, 0.5, 0.9), RasterOptions(backend="cpp"))
    gpu = render_splats(splats.to("cuda"), view(), (0.2, 0.5, 0.9), RasterOptions(backend="gsplat"))
    assert float((gpu.image.cpu() - cpu.image).abs().mean()) < 1e-2


@pytest.mark.parametrize(("degree", "spread"), [(3, 0.6), (1, 3.0), (0, 1.0)])
def test_cpp_projection_matches_torch_values_and_gradients(degree, spread):
    """The C++ EWA projection + SH colour vs the torch reference: every output and every gradient to 1e-4
    relative to the largest entry (spread 3.0 puts Gaussians past the 1.3x tangent clamp)."""
    splats = scene(80, degree, 7)
    splats.means = splats.means * spread / 0.6
    outs, grads = [], []
    for native in (False, True):
        leaves = GaussianSplats(*(getattr(splats, f).clone().requires_grad_(True) for f in FIELDS))
        proj = raster.project_splats(leaves, view(), native=native)
        g = torch.Generator().manual_seed(3)
        values = (proj.means2d, proj.conics, proj.colors, proj.depths)
        sum(((v * torch.randn(v.shape, generator=g)).sum() for v in values), torch.zeros(())).backward()
        outs.append((proj.ids, *values, proj.radii))
        grads.append({f: getattr(leaves, f).grad for f in ("means", "quats", "log_scales", "sh")})
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][-1], outs[1][-1])  # same ids and radii
    for a, b in zip(outs[0][1:-1], outs[1][1:-1]):
        torch.testing.assert_close(b.detach(), a.detach(), atol=1e-4 * float(a.abs().max()), rtol=0)
    for name, ref in grads[0].items():
        torch.testing.assert_close(grads[1][name], ref, atol=1e-4 * float(ref.abs().max()), rtol=0, msg=name)
    tangent = outs[0][1][:, 0]  # some Gaussians sit outside the clamp range in the wide scene
    if spread > 2:
        assert bool(((tangent < -0.3 * 45) | (tangent > 1.3 * 45)).any())
