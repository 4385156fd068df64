"""Multiresolution hash encoding (Instant-NGP) with tiny-cuda-nn's exact semantics and several backends.

Backends (``HashGridConfig.backend``):

* ``"torch"`` -- pure-torch reference (``reference.py``); always works, any device, the ground truth in tests.
* ``"cpp"`` -- C++ CPU kernels (``cpp.py``), compiled with the system compiler on first use and cached.
* ``"tcnn"`` -- tiny-cuda-nn (``tcnn.py``) on CUDA tensors, when ``tinycudann`` imports.
* ``"cuda"`` -- the GPU path without tiny-cuda-nn: the torch reference on CUDA tensors.
* ``"auto"`` -- on CUDA: tcnn if it imports, else the torch reference; on CPU: cpp if it builds, else torch.

An unavailable backend falls back to the torch reference with one warning. CUDA tensors never reach the cpp
backend and CPU tensors never reach tcnn. The parameters are one ``[size_l, F]`` table per level whatever the
backend, so checkpoints move freely between them; :meth:`HashGridEncoding.to_tcnn_params` /
:meth:`HashGridEncoding.from_tcnn_params` convert to and from tiny-cuda-nn's flat parameter vector.
Importing this package imports neither tinycudann nor the compiled extension.
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Float
from torch import Tensor

from ...core.errors import ConfigError
from . import cpp, reference, tcnn
from .layout import (
    INIT_RANGE,
    Backend,
    HashGridConfig,
    LevelSpec,
    level_specs,
    num_params,
    per_level_scale,
    tcnn_encoding_config,
)

__all__ = [
    "Backend",
    "HashGridConfig",
    "HashGridEncoding",
    "LevelSpec",
    "level_specs",
    "make_encoding",
    "num_params",
    "per_level_scale",
    "tcnn_encoding_config",
]

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_backend(requested: Backend, device_type: str) -> str:
    """The backend that runs for ``requested`` on tensors of ``device_type`` ("cpu" or "cuda"), building or
    importing optional backends as needed (``core/native.py``); warns once when a requested fast backend is
    unavailable."""
    if requested == "torch":
        return "torch"
    if device_type == "cuda":
        fallback = "using the torch reference on CUDA" if requested == "tcnn" else None  # auto: silently
        if requested in ("auto", "tcnn") and tcnn.available(fallback):
            return "tcnn"
        if requested == "cpp":
            _warn_once("hash grid: the cpp backend is CPU-only; using the torch reference on CUDA tensors")
        return "cuda"
    if requested in ("auto", "cpp"):
        return "cpp" if cpp.BACKEND.available("using the slower torch reference") else "torch"
    if requested in ("tcnn", "cuda"):
        _warn_once(f"hash grid: backend {requested!r} needs CUDA tensors; using the torch reference on the CPU")
    return "torch"


class HashGridEncoding(torch.nn.Module):
    """Maps positions in [0, 1]^3 (clamped; any leading batch shape) to ``num_levels * features_per_level``
    features, level-major as tiny-cuda-nn orders them."""

    def __init__(self, config: HashGridConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.specs: list[LevelSpec] = level_specs(config)
        self.output_dim: int = config.num_levels * config.features_per_level
        flat = torch.empty(num_params(config))
        flat.uniform_(-INIT_RANGE, INIT_RANGE, generator=torch.Generator().manual_seed(seed))
        self.tables = torch.nn.ParameterList(
            [torch.nn.Parameter(t) for t in self._split(flat)]
        )  # tables[l]: [size_l, F]
        self._resolved: dict[str, str] = {}
        self._tcnn_grid: torch.nn.Module | None = None

    def _split(self, flat: Float[Tensor, "p"]) -> list[Tensor]:
        f = self.config.features_per_level
        return [flat[s.offset * f : (s.offset + s.size) * f].reshape(s.size, f).clone() for s in self.specs]

    @property
    def backend_name(self) -> str:
        """The backend that runs for the tables' current device ("torch", "cpp", "tcnn" or "cuda")."""
        return self._backend_for(self.tables[0].device.type)

    def _backend_for(self, device_type: str) -> str:
        if device_type not in self._resolved:
            self._resolved[device_type] = resolve_backend(self.config.backend, device_type)
        return self._resolved[device_type]

    def forward(self, x: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch d"]:
        if x.ndim < 1 or x.shape[-1] != 3:
            raise ConfigError(f"hash grid expects positions of shape [..., 3], got {tuple(x.shape)}")
        batch_shape = x.shape[:-1]
        tables = list(self.tables)
        x = x.reshape(-1, 3).to(tables[0].dtype).clamp(0.0, 1.0)  # [N, 3]
        backend = self._backend_for(x.device.type)
        if backend == "cpp" and tables[0].dtype == torch.float32:
            out = cpp.encode(x, tables, self.specs)
        elif backend == "tcnn":
            if self._tcnn_grid is None:
                self._tcnn_grid = tcnn.TcnnGrid(self.config)
            out = self._tcnn_grid(x, torch.cat([t.reshape(-1) for t in tables]))
        else:
            out = reference.encode(x, tables, self.specs)
        return out.reshape(*batch_shape, self.output_dim)

    def to_tcnn_params(self) -> Float[Tensor, "p"]:
        """tiny-cuda-nn's flat parameter vector (levels in order, each ``[size_l, F]`` row-major), detached."""
        return torch.cat([t.detach().reshape(-1) for t in self.tables])

    @torch.no_grad()
    def from_tcnn_params(self, flat: Float[Tensor, "p"]) -> None:
        """Load a tiny-cuda-nn flat parameter vector (e.g. from a tcnn-trained model) into the tables."""
        expected = num_params(self.config)
        if flat.ndim != 1 or flat.numel() != expected:
            raise ConfigError(
                f"tiny-cuda-nn hash-grid parameters have shape {tuple(flat.shape)}; expected [{expected}] for "
                f"{self.config}"
            )
        for table, part in zip(self.tables, self._split(flat.to(self.tables[0].dtype))):
            table.copy_(part)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"levels={c.num_levels}, features={c.features_per_level}, table=2^{c.log2_hashmap_size}, "
            f"resolution={c.base_resolution}..{c.max_resolution}, backend={c.backend!r}"
        )


def make_encoding(config: HashGridConfig, seed: int = 0) -> HashGridEncoding:
    """A hash-grid encoding initialised uniform(-1e-4, 1e-4) from ``seed`` (the backend is chosen on first use)."""
    return HashGridEncoding(config, seed=seed)
