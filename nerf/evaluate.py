"""Held-out evaluation: render views, PSNR / SSIM, ``RUN/metrics.json``, optional saved renders.

Protocol: RGBA ground truth (Blender) is composited over white and rendered over white; appearance embeddings
are not known for held-out views, so the model is called with ``image_indices=None`` (the model then uses its
documented eval choice, the mean training embedding). PSNR and SSIM are means over the views (NeRF protocol).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import CheckpointError, InputError
from ..core.files import atomic_path, atomic_write, ensure_folder
from .chunked import render_rays_chunked
from .config import MAX_RAYS_PER_CHUNK
from .data import ViewSet, composite, load_views
from .metrics import psnr, ssim
from .run import load_run, require_dataset


def render_view(model: torch.nn.Module, views: ViewSet, v: int, max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK):
    """Render view ``v`` of ``views``: (prediction [H, W, 3], ground truth [H, W, 3]) float32 numpy in [0, 1]."""
    model.eval()
    origins, dirs, colours = views.view_rays(v)  # [H*W, 3], [H*W, 3], [H*W, C]
    white = torch.ones(3)
    target = composite(colours, white)  # [H*W, 3]
    background = white if views.has_alpha else None
    rendered = render_rays_chunked(model, origins, dirs, background, max_rays_per_chunk)["rgb"]
    h, w = views.view_shape(v)
    pred = rendered.clamp(0.0, 1.0).cpu().reshape(h, w, 3).numpy()
    return pred, target.cpu().reshape(h, w, 3).numpy()


def evaluate_views(
    model: torch.nn.Module,
    views: ViewSet,
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK,
    progress: bool = False,
    save_dir: Path | None = None,
) -> dict[str, Any]:
    """Mean PSNR / SSIM over ``views`` plus per-view figures; renders saved to ``save_dir`` when given."""
    per_view = []
    for v in tqdm(range(len(views)), desc="eval", unit="view", disable=not progress, dynamic_ncols=True):
        pred, target = render_view(model, views, v, max_rays_per_chunk)
        per_view.append({"name": views.names[v], "psnr": psnr(pred, target), "ssim": ssim(pred, target)})
        if save_dir is not None:
            save_render(save_dir, views.names[v], pred, target)
    return {
        "psnr": float(np.mean([p["psnr"] for p in per_view])),
        "ssim": float(np.mean([p["ssim"] for p in per_view])),
        "per_view": per_view,
    }


def encoding_backend(model: torch.nn.Module) -> str | None:
    """The hash-grid backend the model's encoding runs on ("cpp", "torch", "tcnn", ...), when it has one."""
    for module in model.modules():
        name = getattr(module, "backend_name", None)
        if isinstance(name, str):
            return name
    return None


def _to_png(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] float RGB in [0, 1] -> uint8 BGR for cv2.imwrite."""
    rgb = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def save_render(folder: Path, name: str, pred: np.ndarray, target: np.ndarray) -> tuple[Path, Path]:
    """Write ``NAME.png`` (the render) and ``NAME_vs_gt.png`` (ground truth | render side by side)."""
    folder = ensure_folder(Path(folder))
    stem = Path(name).stem
    render_path, pair_path = folder / f"{stem}.png", folder / f"{stem}_vs_gt.png"
    for path, image in ((render_path, pred), (pair_path, np.concatenate([target, pred], axis=1))):
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), _to_png(image)):
                raise InputError(f"{path}: could not write the PNG (is the folder writable and the disk not full?)")
    return render_path, pair_path


def _plain(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write RUN/metrics.json atomically (indent 2, strict JSON)."""
    atomic_write(Path(path), json.dumps(_plain(metrics), indent=2, allow_nan=False) + "\n")


def evaluate_run(
    run_dir: Path,
    save_images: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    dataset: Path | None = None,
) -> dict[str, Any]:
    """Re-compute RUN/metrics.json from the newest checkpoint of a run (renders saved to ``save_images``);
    ``dataset`` overrides the run's recorded dataset (moved data)."""
    if save_images is not None and Path(save_images).exists() and not Path(save_images).is_dir():
        raise InputError(f"{save_images}: is a file; --save-images expects a folder")
    run = load_run(run_dir, device, dataset)
    run.model.inference.proposal = "reference"  # the training-time evaluation path: metrics.json reproduced
    data = require_dataset(run)
    eval_idx = run.cameras.eval_indices[:: run.config.data.eval_view_stride]
    if not eval_idx:
        raise CheckpointError(f"{data.root}: the dataset has no held-out views to evaluate")
    views = load_views(data, eval_idx, run.scene, run.config.data.max_image_side)
    metrics = evaluate_views(run.model, views, run.config.eval_chunk, progress, save_images)
    metrics.update(run_figures(run.cameras.split, len(views), run.step, run.trainer_state, run.device, run.model))
    write_metrics(Path(run_dir) / "metrics.json", metrics)
    return metrics


def run_figures(split: str, eval_views: int, step: int, state: dict[str, Any], device: torch.device,
                model: torch.nn.Module) -> dict[str, Any]:
    """The metrics.json entries besides the image metrics (``state``: the trainer's TrainState as a dict);
    "sampler" is the model's sampler that ran ("occupancy" or "proposal"), "eval_appearance" the appearance held-out
    views were rendered with (``eval_appearance``)."""
    seconds = float(state["train_seconds"])
    return {"split": split, "eval_views": eval_views, "steps": int(step), "train_seconds": seconds,
            "device": str(device), "samples_per_second": state["total_samples"] / max(seconds, 1e-9),
            "rays_per_second": state["total_rays"] / max(seconds, 1e-9), "encoding_backend": encoding_backend(model),
            "sampler": getattr(model, "sampler", None), "eval_appearance": eval_appearance(model)}


def eval_appearance(model: torch.nn.Module) -> str:
    """What appearance held-out views are rendered with: "mean" (the mean of the training images' embeddings,
    as nerfacto's default ``use_average_appearance_embedding``) or "none" (the model has no embeddings)."""
    field = getattr(model, "field", None)
    return "mean" if getattr(field, "appearance", None) is not None else "none"
