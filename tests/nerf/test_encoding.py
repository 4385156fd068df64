"""Hash-grid encoding: tiny-cuda-nn layout, reference vs a brute-force per-point implementation, every backend vs
the reference (values and gradients), lazy build, fallbacks, tcnn parameter round trip, config validation."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import nerfstage.nerf.encoding as encoding
from nerfstage.core import native
from nerfstage.core.errors import ConfigError
from nerfstage.nerf.encoding import HashGridConfig, level_specs, make_encoding, num_params
from nerfstage.nerf.encoding import cpp, reference, tcnn

# 5 levels, per_level_scale exactly 2: resolutions 4, 8, 16, 32, 64; table 2^12 = 4096 entries, so levels 0-2 are
# dense (64, 512 and exactly 4096 vertices) and levels 3-4 are hashed.
SMALL = HashGridConfig(num_levels=5, log2_hashmap_size=12, base_resolution=4, max_resolution=64, backend="torch")


def _random_setup(config: HashGridConfig, n: int = 3000, seed: int = 0):
    """Tables uniform in [-1, 1] (so gradients are not tiny), positions in [0, 1]^3 with the corners included."""
    g = torch.Generator().manual_seed(seed)
    specs = level_specs(config)
    f = config.features_per_level
    tables = [(torch.rand(s.size, f, generator=g) * 2 - 1).requires_grad_() for s in specs]
    x = torch.rand(n, 3, generator=g)
    x[:8] = torch.tensor([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=torch.float32)
    return specs, tables, x.requires_grad_()


def _brute_force(point: np.ndarray, flat: np.ndarray, config: HashGridConfig) -> np.ndarray:
    """One point, plain Python integers, written from tiny-cuda-nn's grid.h independently of the library."""
    f, table = config.features_per_level, 1 << config.log2_hashmap_size
    growth = (math.log(config.max_resolution) - math.log(config.base_resolution)) / (config.num_levels - 1)
    pls = np.float32(math.exp(growth))
    out, offset = [], 0
    for level in range(config.num_levels):
        scale = np.exp2(np.float32(level) * np.log2(pls)) * np.float32(config.base_resolution) - np.float32(1)
        res = int(math.ceil(scale)) + 1
        size = min(table, (res**3 + 7) // 8 * 8)
        pos = [np.float32(point[d]) * scale + np.float32(0.5) for d in range(3)]
        cell = [int(math.floor(p)) for p in pos]
        frac = [float(p - np.float32(math.floor(p))) for p in pos]
        value = np.zeros(f)
        for corner in range(8):
            c = [cell[d] + ((corner >> d) & 1) for d in range(3)]
            w = math.prod(frac[d] if (corner >> d) & 1 else 1 - frac[d] for d in range(3))
            if res**3 <= size:
                index = (c[0] + c[1] * res + c[2] * res * res) % size
            else:
                index = ((c[0] ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) % 2**32) % size
            value += w * flat[(offset + index) * f : (offset + index + 1) * f]
        out.append(value)
        offset += size
    return np.concatenate(out)


def test_level_layout_matches_tcnn_formulas():
    specs = level_specs(SMALL)
    assert [s.resolution for s in specs] == [4, 8, 16, 32, 64]
    assert [s.size for s in specs] == [64, 512, 4096, 4096, 4096]
    assert [s.offset for s in specs] == [0, 64, 576, 4672, 8768]
    assert [s.hashed for s in specs] == [False, False, False, True, True]
    assert num_params(SMALL) == 12864 * 2
    default = HashGridConfig()
    assert encoding.per_level_scale(default) == pytest.approx(1.3819128799677987, rel=1e-12)
    assert level_specs(default)[-1].resolution == 2048
    assert num_params(default) == 12196240  # 16 levels x 2 features, dense levels smaller than 2^19


def test_reference_matches_brute_force_per_point():
    enc = make_encoding(SMALL, seed=3)
    with torch.no_grad():
        for t in enc.tables:
            t.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    flat = enc.to_tcnn_params().double().numpy()
    points = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.3, 0.71, 0.05], [0.999, 0.5, 0.123], [0.61, 0.02, 0.87]])
    ours = enc(torch.tensor(points, dtype=torch.float32)).detach().double().numpy()
    expected = np.stack([_brute_force(p, flat, SMALL) for p in points])
    np.testing.assert_allclose(ours, expected, atol=2e-6)
    assert np.abs(expected).max() > 0.1  # the check is not vacuous


def test_init_is_seeded_and_in_tcnn_range():
    a, b, c = make_encoding(SMALL, seed=0), make_encoding(SMALL, seed=0), make_encoding(SMALL, seed=1)
    pa, pb, pc = a.to_tcnn_params(), b.to_tcnn_params(), c.to_tcnn_params()
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert pa.abs().max() <= 1e-4 and pa.abs().max() > 0.9e-4


def _assert_close_scaled(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("features", [1, 2, 4, 8])
def test_cpp_backend_matches_reference(features):
    config = HashGridConfig(num_levels=6, features_per_level=features, log2_hashmap_size=11, base_resolution=4,
                            max_resolution=96)
    specs, tables, x = _random_setup(config)
    want = reference.encode(x, tables, specs)
    got = cpp.encode(x, tables, specs)  # builds the extension on first use (~30 s once, then cached)
    _assert_close_scaled(got, want)
    grad_out = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    want_grads = torch.autograd.grad(want, [x, *tables], grad_out)
    got_grads = torch.autograd.grad(got, [x, *tables], grad_out)
    _assert_close_scaled(got_grads[0], want_grads[0])  # positions
    for g, w in zip(got_grads[1:], want_grads[1:]):  # tables, level by level
        _assert_close_scaled(g, w)
    assert want_grads[0].abs().max() > 1.0 and want_grads[-1].abs().max() > 0.1


def test_module_on_cpu_uses_cpp_and_matches_torch_backend():
    fast = make_encoding(replace(SMALL, backend="auto"), seed=5)
    slow = make_encoding(SMALL, seed=5)
    assert fast.backend_name == "cpp" and slow.backend_name == "torch"
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # some outside: clamped
    a, b = fast(x), slow(x)
    _assert_close_scaled(a, b, 1e-7)
    a.square().sum().backward()
    b.square().sum().backward()
    for p, q in zip(fast.tables, slow.tables):
        _assert_close_scaled(p.grad, q.grad, 1e-5)


def test_cpp_backend_trains():
    torch.manual_seed(0)
    enc = make_encoding(HashGridConfig(num_levels=8, log2_hashmap_size=14, base_resolution=4, max_resolution=128,
                                       backend="cpp"))
    head = torch.nn.Linear(enc.output_dim, 1)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-2, eps=1e-15, fused=True)
    x = torch.rand(4096, 3, generator=torch.Generator().manual_seed(1))
    target = torch.sin(6 * x[:, :1]) * torch.cos(4 * x[:, 1:2]) + x[:, 2:]
    for _ in range(80):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(head(enc(x)), target)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3 * target.var().item()  # ~2.3e-4 measured


def test_import_builds_nothing_and_first_use_builds():
    code = (
        "import sys, torch, nerfstage, nerfstage.nerf, nerfstage.nerf.encoding as e\n"
        "bad = [k for k in sys.modules if k.startswith(('nerfstage_hashgrid', 'tinycudann'))]\n"
        "assert not bad and e.cpp.BACKEND.module is None, bad\n"
        "enc = e.make_encoding(e.HashGridConfig(num_levels=2, log2_hashmap_size=8, base_resolution=4,"
        " max_resolution=8))\n"
        "enc(torch.rand(10, 3))\n"
        "print(enc.backend_name, e.cpp.BACKEND.module.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    backend, module = result.stdout.split()
    assert backend == "cpp" and module.startswith(cpp.EXTENSION_PREFIX)


def test_stale_build_lock_from_a_killed_build_does_not_hang():
    cpp.BACKEND.load()  # built (or loaded from the cache)
    build_dir = native.build_directory(native.build_name(cpp.SPEC))
    (build_dir / "lock").touch()  # what torch leaves behind when a build is killed
    code = "from nerfstage.nerf.encoding import cpp; cpp.BACKEND.load(); print('loaded')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "loaded", result.stderr
    assert not (build_dir / "lock").exists()


@pytest.fixture
def fresh_backends(monkeypatch):
    """Forget cached build results and warnings (restored afterwards)."""
    monkeypatch.setattr(cpp, "BACKEND", native.inline_extension("the C++ hash grid", cpp.SPEC))
    monkeypatch.setattr(tcnn, "BACKEND", native.optional_module("tinycudann"))
    monkeypatch.setattr(encoding, "_warned", set())


def test_auto_falls_back_to_torch_with_one_warning_when_build_fails(fresh_backends, monkeypatch):
    def broken_build():
        raise RuntimeError("Error building extension 'nerfstage_hashgrid_cpu': g++ not found")

    monkeypatch.setattr(cpp, "BACKEND", native.LazyBackend("building the C++ hash grid", broken_build))
    config = replace(SMALL, backend="auto")
    x = torch.rand(100, 3, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="torch reference") as record:
        enc = make_encoding(config)
        out = enc(x)
        make_encoding(config)(x)  # second module: no second warning
    assert len(record) == 1 and "g++ not found" in str(record[0].message)
    assert enc.backend_name == "torch"
    assert torch.equal(out, reference.encode(x, list(enc.tables), enc.specs))


def test_gpu_backends_on_cpu_fall_back_to_torch(fresh_backends):
    with pytest.warns(RuntimeWarning, match="needs CUDA"):
        assert encoding.resolve_backend("tcnn", "cpu") == "torch"
    with pytest.warns(RuntimeWarning, match="CPU-only"):
        assert encoding.resolve_backend("cpp", "cuda") == "cuda"  # CUDA tensors never reach the cpp kernels
    if not torch.cuda.is_available():
        assert not tcnn.available()


def test_tcnn_params_round_trip():
    a, b = make_encoding(SMALL, seed=0), make_encoding(SMALL, seed=1)
    with torch.no_grad():
        a.tables[3][17, 1] = 0.5
    flat = a.to_tcnn_params()
    assert flat.shape == (num_params(SMALL),)
    spec = a.specs[3]
    assert flat[(spec.offset + 17) * 2 + 1] == 0.5  # tcnn layout: level offset, then entry, then feature
    b.from_tcnn_params(flat)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), b(x))
    with pytest.raises(ConfigError, match="expected \\[25728\\]"):
        b.from_tcnn_params(flat[:-1])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_levels", 0),
        ("num_levels", 33),
        ("features_per_level", 3),
        ("log2_hashmap_size", 40),
        ("base_resolution", 1),
        ("max_resolution", 8),
        ("backend", "gpu"),
        ("num_levels", 2.5),
    ],
)
def test_config_validation(field, value):
    with pytest.raises(ConfigError, match=f"HashGridConfig.{field}="):
        HashGridConfig(**{"base_resolution": 16, field: value})


def test_batch_shapes_and_bad_position_shape():
    enc = make_encoding(replace(SMALL, backend="auto"))
    x = torch.rand(4, 5, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(enc(x), enc(x.reshape(20, 3)).reshape(4, 5, 10))
    assert enc(torch.zeros(0, 3)).shape == (0, 10)
    with pytest.raises(ConfigError, match="\\[..., 3\\]"):
        enc(torch.rand(4, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["cuda", "tcnn"])
def test_gpu_backends_match_reference(backend):
    if backend == "tcnn" and not tcnn.available():
        pytest.skip("tinycudann is not installed")
    config = replace(SMALL, backend=backend)
    gpu, cpu = make_encoding(config, seed=2).cuda(), make_encoding(SMALL, seed=2)
    assert gpu.backend_name == backend
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(0))
    a, b = gpu(x.cuda()), cpu(x)
    _assert_close_scaled(a.cpu(), b, 1e-6)
    a.sum().backward()
    b.sum().backward()
    for p, q in zip(gpu.tables, cpu.tables):
        _assert_close_scaled(p.grad.cpu(), q.grad, 1e-5)


class _FakeTcnnEncoding(torch.nn.Module):
    """Stands in for ``tinycudann.Encoding`` on the CPU: owns a flat ``params`` parameter like tcnn's Module and
    reads it in forward; the maths is our reference on that flat (tcnn-layout) vector."""

    def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
        super().__init__()
        self.config = HashGridConfig(
            num_levels=encoding_config["n_levels"],
            features_per_level=encoding_config["n_features_per_level"],
            log2_hashmap_size=encoding_config["log2_hashmap_size"],
            base_resolution=encoding_config["base_resolution"],
            max_resolution=SMALL.max_resolution,
        )
        assert encoding_config["per_level_scale"] == encoding.per_level_scale(self.config)
        self.params = torch.nn.Parameter(torch.zeros(num_params(self.config)))

    def forward(self, x):
        specs, f = level_specs(self.config), self.config.features_per_level
        tables = [self.params[s.offset * f : (s.offset + s.size) * f].view(s.size, f) for s in specs]
        return reference.encode(x, tables, specs)


def test_tcnn_wrapper_plumbing_with_a_stand_in(monkeypatch):
    """The tcnn backend feeds our per-level tables, flattened in tcnn's layout, to tinycudann and gets the gradient
    back into them (checked with a CPU stand-in for tinycudann; the real one needs a GPU)."""
    fake = type("FakeTinycudann", (), {"Encoding": _FakeTcnnEncoding})
    monkeypatch.setattr(tcnn, "BACKEND", native.LazyBackend("importing tinycudann", lambda: fake))
    enc, ref = make_encoding(SMALL, seed=4), make_encoding(SMALL, seed=4)
    grid = tcnn.TcnnGrid(SMALL)
    assert list(grid.parameters()) == []  # tcnn's own copy of the table is removed
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(0))
    out = grid(x, torch.cat([t.reshape(-1) for t in enc.tables]))
    want = ref(x)
    assert torch.equal(out, want)
    out.square().sum().backward()
    want.square().sum().backward()
    for p, q in zip(enc.tables, ref.tables):
        _assert_close_scaled(p.grad, q.grad, 1e-7)
    assert not hasattr(grid.encoding, "params")  # nothing left behind between calls
