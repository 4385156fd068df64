"""tiny-cuda-nn backend (CUDA only). ``tinycudann`` is imported here (:data:`BACKEND`) and nowhere else, and only
on first use.

Our canonical parameters stay the per-level tables of :class:`~nerfstage.nerf.encoding.HashGridEncoding`
(checkpoints are the same whichever backend trained them). Each forward concatenates them into tiny-cuda-nn's
flat layout -- which is exactly our level order (see ``layout.py``) -- and hands that tensor to a
``tinycudann.Encoding`` whose own parameter is removed, so gradients flow back to our tables.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ...core.native import optional_module
from .layout import HashGridConfig, tcnn_encoding_config

BACKEND = optional_module("tinycudann")
"""tinycudann, imported on first load (the only place it is imported)."""


def available(fallback: str | None = None) -> bool:
    """True when a CUDA device is present and tinycudann imports; when it does not import, warns once with
    ``fallback`` (what runs instead) if given."""
    return torch.cuda.is_available() and BACKEND.available(fallback)


class TcnnGrid(torch.nn.Module):
    """A parameter-free tinycudann HashGrid; the flat table is passed in at each call."""

    def __init__(self, config: HashGridConfig):
        super().__init__()
        tcnn = BACKEND.load()
        self.encoding = tcnn.Encoding(3, tcnn_encoding_config(config), dtype=torch.float32)
        del self.encoding._parameters["params"]  # our tables are the parameters

    def forward(self, x: Float[Tensor, "n 3"], flat_params: Float[Tensor, "p"]) -> Float[Tensor, "n d"]:
        self.encoding.params = flat_params.float().contiguous()
        try:
            return self.encoding(x.float().contiguous()).float()
        finally:
            del self.encoding.params
