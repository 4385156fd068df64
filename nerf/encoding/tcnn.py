"""tiny-cuda-nn backend (CUDA only). ``tinycudann`` is imported here and nowhere else, and only on first use.

Our canonical parameters stay the per-level tables of :class:`~nerfstage.nerf.encoding.HashGridEncoding`
(checkpoints are the same whichever backend trained them). Each forward concatenates them into tiny-cuda-nn's
flat layout -- which is exactly our level order (see ``layout.py``) -- and hands that tensor to a
``tinycudann.Encoding`` whose own parameter is removed, so gradients flow back to our tables.
"""

from __future__ import annotations

from types import ModuleType

import torch
from jaxtyping import Float
from torch import Tensor

from .layout import HashGridConfig, tcnn_encoding_config

_module: ModuleType | None = None
_failure: str | None = None


class BackendUnavailable(ImportError):
    """tinycudann is not installed, or fails to load (the message says why)."""


def load() -> ModuleType:
    """The ``tinycudann`` module; raises BackendUnavailable (cached) when it cannot be imported."""
    global _module, _failure
    if _module is not None:
        return _module
    if _failure is not None:
        raise BackendUnavailable(_failure)
    try:
        import tinycudann  # type: ignore[import-not-found]
    except (ImportError, OSError) as exc:
        _failure = f"tinycudann is unavailable ({type(exc).__name__}: {exc})"
        raise BackendUnavailable(_failure) from exc
    _module = tinycudann
    return _module


def available() -> bool:
    """True when tinycudann imports and a CUDA device is present."""
    if not torch.cuda.is_available():
        return False
    try:
        load()
    except BackendUnavailable:
        return False
    return True


class TcnnGrid(torch.nn.Module):
    """A parameter-free tinycudann HashGrid; the flat table is passed in at each call."""

    def __init__(self, config: HashGridConfig):
        super().__init__()
        tcnn = load()
        self.encoding = tcnn.Encoding(3, tcnn_encoding_config(config), dtype=torch.float32)
        del self.encoding._parameters["params"]  # our tables are the parameters

    def forward(self, x: Float[Tensor, "n 3"], flat_params: Float[Tensor, "p"]) -> Float[Tensor, "n d"]:
        self.encoding.params = flat_params.float().contiguous()
        try:
            return self.encoding(x.float().contiguous()).float()
        finally:
            del self.encoding.params
