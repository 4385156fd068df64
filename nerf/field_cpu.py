"""Fused CPU inference of the proposal path (``field_cpu.cpp``), built on first use and cached like the hash
grid's.

The only module that loads the extension (:data:`BACKEND`, a :class:`nerfstage.core.native.LazyBackend`): compiled
with the system C++ compiler the first time it is loaded (about 40 s), never at import, cached in
``$TORCH_EXTENSIONS_DIR`` (``core/native.py``). :class:`FusedPath` renders a batch of rays with one C++ loop per
ray: every proposal network (hash grid, MLP, density, early termination), the resampling, the radiance field,
the compositing and the colour MLP on the samples that weigh, with no autograd and no tensor per stage. The
pure-torch path of ``fast_proposal.py`` is the reference; the tests compare the two. When the kernel cannot be
built or does not apply (CUDA tensors, float64, a layer layout it does not know), :func:`usable` is False and
``fast_proposal.py`` runs the torch path (after one warning when the build failed). Inference only: no gradients.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..core.native import InlineCpp, inline_extension
from .encoding import HashGridEncoding

SOURCE = Path(__file__).with_name("field_cpu.cpp")
SPEC = InlineCpp(prefix="nerfstage_field_cpu", source=SOURCE, functions=("proposal_render",),
                 cflags=("-O3", "-march=native", "-fopenmp"), ldflags=("-fopenmp",))
BACKEND = inline_extension("the fused C++ field kernel", SPEC)
VECTOR = 16
"""Output columns of every dense layer are padded to a multiple of this (the kernel's vector block)."""
MAX_WIDTH = 256
"""Widest layer the kernel takes (inputs or padded outputs)."""


def available() -> bool:
    """True when the extension is built or builds now (warns once, with the reason, when it cannot)."""
    return BACKEND.available("using the torch path of the fast proposal renderer")


def _linears(mlp: nn.Sequential) -> list[nn.Linear] | None:
    """The Linear layers of a Linear/ReLU/Linear/... stack (ReLU between every two), else None."""
    layers = list(mlp)
    linears = layers[0::2]
    if not all(isinstance(m, nn.Linear) for m in linears) or not all(isinstance(m, nn.ReLU) for m in layers[1::2]):
        return None
    if len(layers) % 2 == 0 or any(max(m.in_features, m.out_features) > MAX_WIDTH - VECTOR for m in linears):
        return None
    return linears  # type: ignore[return-value]


def _encoding_ok(encoding: HashGridEncoding) -> bool:
    return encoding.tables[0].dtype == torch.float32 and encoding.tables[0].device.type == "cpu" \
        and encoding.config.features_per_level in (1, 2, 4, 8)


def usable(model, like: Tensor) -> bool:
    """True when the kernels apply to ``model`` (a proposal-sampled NerfModel) on tensors like ``like`` (CPU
    float32, plain Linear/ReLU MLPs, the colour MLP's first layer split as ``_ColorHead``) and build."""
    if like.device.type != "cpu" or like.dtype != torch.float32 or model.proposal is None:
        return False
    field = model.field
    nets = [n.mlp for n in model.proposal.networks] + [field.density_mlp, field.color_mlp]
    if any(_linears(m) is None for m in nets) or len(_linears(field.color_mlp)) < 2:  # type: ignore[arg-type]
        return False
    if not all(_encoding_ok(e) for e in [n.encoding for n in model.proposal.networks] + [field.encoding]):
        return False
    return available()


def padded(width: int) -> int:
    return -(-width // VECTOR) * VECTOR


def pack_linear(weight: Float[Tensor, "o i"], bias: Float[Tensor, "o"] | None,
                in_pad: int | None = None) -> tuple[Tensor, Tensor]:
    """Transposed weights [in (or ``in_pad``), out_pad] and bias [out_pad], zero-padded (the kernel's layout)."""
    out, inp = weight.shape
    wt = weight.new_zeros(in_pad or inp, padded(out))
    wt[:inp, :out] = weight.detach().T
    b = weight.new_zeros(padded(out))
    if bias is not None:
        b[:out] = bias.detach()
    return wt.contiguous(), b


def pack_mlp(mlp: nn.Sequential) -> tuple[list[Tensor], list[Tensor]]:
    """Every Linear of a Linear/ReLU stack packed; each layer's input width is the previous padded output."""
    weights, biases, width = [], [], None
    for layer in _linears(mlp) or []:
        wt, b = pack_linear(layer.weight, layer.bias, in_pad=width)
        weights.append(wt)
        biases.append(b)
        width = wt.shape[1]
    return weights, biases


def grid_args(encoding: HashGridEncoding) -> tuple:
    """Tables and per-level (scales, resolutions, sizes, hashed) of a hash-grid encoding."""
    specs = encoding.specs
    return ([t.detach() for t in encoding.tables], [s.scale for s in specs], [s.resolution for s in specs],
            [s.size for s in specs], [int(s.hashed) for s in specs])


def pack_color(field) -> tuple[list[Tensor], list[Tensor]]:
    """The colour MLP packed with its first layer reduced to the geometry-feature part (zero bias: the per-ray
    base of ``_ColorHead`` carries the SH / appearance part and the bias)."""
    linears = _linears(field.color_mlp)
    g = field.config.geo_feat_dim
    first = linears[0]  # type: ignore[index]
    n_sh = first.in_features - g - (field.config.appearance_dim if field.appearance is not None else 0)
    weights, biases = [], []
    wt, b = pack_linear(first.weight[:, n_sh:n_sh + g], None)
    for layer in linears[1:]:  # type: ignore[index]
        weights.append(wt)
        biases.append(b)
        wt, b = pack_linear(layer.weight, layer.bias, in_pad=wt.shape[1])
    return [*weights, wt], [*biases, b]


def pad_base(base: Float[Tensor, "n h"], width: int) -> Float[Tensor, "n w"]:
    """``_ColorHead.base`` zero-padded to the kernel's padded hidden width."""
    out = base.new_zeros(len(base), width)
    out[:, : base.shape[1]] = base
    return out


class FusedPath:
    """The whole proposal path of a ray in one C++ loop (every proposal network, the resampling, the field, the
    compositing and the colour): ``render_proposal_fast`` without a tensor per stage."""

    def __init__(self, model):
        networks = [(n.encoding, n.mlp) for n in model.proposal.networks]
        networks.append((model.field.encoding, model.field.density_mlp))
        grids = [grid_args(encoding) for encoding, _ in networks]
        self.grids = [list(column) for column in zip(*grids)]  # tables, scales, resolutions, sizes, hashed
        packed = [pack_mlp(mlp) for _, mlp in networks]
        self.weights, self.biases = [w for w, _ in packed], [b for _, b in packed]
        self.color_w, self.color_b = pack_color(model.field)
        field = model.field
        self.box = [float(v) for v in field.aabb.reshape(-1)]
        self.bounded, self.l2 = int(field.config.bounded), int(field.config.contraction_norm == "l2")

    def __call__(self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], near: Float[Tensor, "n"],
                 far: Float[Tensor, "n"], background: Float[Tensor, "n 3"], base: Float[Tensor, "n h"],
                 counts: list[int], block: int, stop: float, min_weight: float,
                 padding: float = 0.01) -> dict[str, Tensor | int]:
        """``render_proposal_fast``'s dict for ``counts`` samples per stage (first bins, then each proposal
        network's resampled count, the field's last)."""
        quantiles = [torch.linspace(0.0, 1.0, c + 1) for c in counts]
        rgb, acc, depth, queries, coloured = BACKEND.load().proposal_render(
            origins.contiguous(), directions.contiguous(), near.reshape(-1).contiguous(),
            far.reshape(-1).contiguous(), background.contiguous(), pad_base(base, self.color_w[0].shape[1]),
            self.box, self.bounded, self.l2, quantiles, *self.grids, self.weights, self.biases, self.color_w,
            self.color_b, int(block), float(stop), float(min_weight), float(padding))
        return {"rgb": rgb, "accumulation": acc, "depth": depth, "num_samples": int(coloured.sum()),
                "num_evaluated": int(queries.sum())}
