"""The one chunked renderer: rays in, colour / depth / opacity out, in bounded memory.

Every consumer that renders many rays (held-out evaluation, the trainer's live renders, ``render.image`` for
frames, panoramas, plates and point clouds, the viewer) calls :func:`render_rays_chunked`; it is the only caller
of ``model.render_rays`` outside the model itself and the trainer's optimisation step.

* **Memory**: the model sees at most ``max_rays_per_chunk`` rays at once (raised to the fast inference path's own
  ``InferenceOptions.max_rays`` when that path runs: its working memory is bounded per round by
  ``target_samples``, and fewer, larger calls cost fewer rounds). Outputs are preallocated once on the rays'
  device, so no chunk list is concatenated at the end.
* **Devices**: rays may live anywhere; each chunk is moved to the model's device and its results back.
* **Threads**: the whole call runs under ``inference.inference_threads`` (the model's ``inference.threads``
  policy: one thread while other processes oversubscribe the cores).
* **Progress**: ``progress(n)`` after every chunk with the rays finished in it (progress bars, cancellation:
  an exception raised there stops the render).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.errors import ConfigError
from .config import MAX_RAYS_PER_CHUNK
from .inference import InferenceOptions, inference_threads

OUTPUT_KEYS = ("rgb", "depth", "accumulation")
"""What :func:`render_rays_chunked` returns besides ``num_samples``."""


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without parameters)."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def rays_per_call(model: torch.nn.Module, max_rays_per_chunk: int) -> int:
    """Rays handed to ``model.render_rays`` at once (see the module docstring)."""
    options = getattr(model, "inference", None)
    if isinstance(options, InferenceOptions) and options.method == "fast":
        return max(int(max_rays_per_chunk), options.max_rays)
    return int(max_rays_per_chunk)


def _thread_policy(model: torch.nn.Module, device: torch.device):
    options = getattr(model, "inference", None)
    return inference_threads(options.threads, device) if isinstance(options, InferenceOptions) else nullcontext()


@torch.no_grad()
def render_rays_chunked(
    model: torch.nn.Module,
    origins: Float[Tensor, "n 3"],
    directions: Float[Tensor, "n 3"],
    background: Float[Tensor, "n 3"] | Float[Tensor, "3"] | None = None,
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Tensor | int]:
    """Render rays of the normalised scene frame without gradients, at most ``max_rays_per_chunk`` at a time.

    ``background`` [n, 3] per ray, [3] for all, or None (the model's default: white, or black for black-trained
    models). Returns "rgb" [n, 3], "depth" [n] (along the ray), "accumulation" [n] as float32 on the rays' device,
    and "num_samples" (int). Evaluation semantics: no jitter, mean appearance embedding."""
    if int(max_rays_per_chunk) < 1:
        raise ConfigError(f"max_rays_per_chunk={max_rays_per_chunk}: expected a positive number of rays",
                          field="max_rays_per_chunk")
    n, home, device = len(origins), origins.device, model_device(model)
    out = {"rgb": torch.empty(n, 3, device=home), "depth": torch.empty(n, device=home),
           "accumulation": torch.empty(n, device=home)}
    step, total = rays_per_call(model, max_rays_per_chunk), 0
    with _thread_policy(model, device):
        for start in range(0, n, step):
            stop = min(start + step, n)
            result = model.render_rays(origins[start:stop].to(device), directions[start:stop].to(device), None,
                                       _chunk_background(background, start, stop, device), training=False)
            for key in OUTPUT_KEYS:
                out[key][start:stop] = result[key].float().to(home)
            total += int(result["num_samples"])
            if progress is not None:
                progress(stop - start)
    return {**out, "num_samples": total}


def _chunk_background(background: Tensor | None, start: int, stop: int, device: torch.device) -> Tensor | None:
    """The background rows of one chunk ([stop - start, 3]) on ``device``, or None for the model's default."""
    if background is None:
        return None
    background = torch.as_tensor(background, dtype=torch.float32)
    if background.ndim == 1:
        return background.to(device).expand(stop - start, 3)
    return background[start:stop].to(device)
