"""Held-out evaluation: render views, PSNR / SSIM, ``RUN/metrics.json``, optional saved renders.

Protocol: RGBA ground truth (Blender) is composited over white and rendered over white; appearance embeddings
are not known for held-out views, so the model is called with ``image_indices=None`` (the model then uses its
documented eval choice, the mean training embedding). PSNR and SSIM are means over the views (NeRF protocol).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import CheckpointError
from .data import ViewSet, composite
from .inference import inference_chunk
from .metrics import psnr, ssim


@torch.no_grad()
def render_view(model: torch.nn.Module, views: ViewSet, v: int, device: torch.device, chunk: int = 8192):
    """Render view ``v`` of ``views``: (prediction [H, W, 3], ground truth [H, W, 3]) float32 numpy in [0, 1]."""
    model.eval()
    origins, dirs, colours = views.view_rays(v)  # [H*W, 3], [H*W, 3], [H*W, C]
    white = torch.ones(3)
    target = composite(colours, white)  # [H*W, 3]
    out = []
    chunk = inference_chunk(model, chunk)
    for start in range(0, len(origins), chunk):
        o = origins[start : start + chunk].to(device)
        d = dirs[start : start + chunk].to(device)
        bg = torch.ones_like(o) if views.has_alpha else None
        rendered = model.render_rays(o, d, None, bg, training=False)["rgb"]
        out.append(rendered.float().clamp(0.0, 1.0).cpu())
    h, w = views.view_shape(v)
    pred = torch.cat(out).reshape(h, w, 3).numpy()
    return pred, target.reshape(h, w, 3).numpy()


def evaluate_views(
    model: torch.nn.Module,
    views: ViewSet,
    device: torch.device,
    chunk: int = 8192,
    progress: bool = False,
    save_dir: Path | None = None,
) -> dict[str, Any]:
    """Mean PSNR / SSIM over ``views`` plus per-view figures; renders saved to ``save_dir`` when given."""
    per_view = []
    for v in tqdm(range(len(views)), desc="eval", unit="view", disable=not progress, dynamic_ncols=True):
        pred, target = render_view(model, views, v, device, chunk)
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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    render_path, pair_path = folder / f"{stem}.png", folder / f"{stem}_vs_gt.png"
    cv2.imwrite(str(render_path), _to_png(pred))
    cv2.imwrite(str(pair_path), _to_png(np.concatenate([target, pred], axis=1)))
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
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(_plain(metrics), handle, indent=2, allow_nan=False)
        handle.write("\n")
    os.replace(tmp, path)


def evaluate_run(
    run_dir: Path,
    save_images: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    dataset: Path | None = None,
) -> dict[str, Any]:
    """Re-compute RUN/metrics.json from the newest checkpoint of a run (renders saved to ``save_images``)."""
    from . import checkpoint as ckpt
    from .config import load_config
    from .data import load_views, read_dataparser_transforms, resolve_device, split_indices
    from .trainer import load_any_dataset, make_model

    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.json")
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(f"{run_dir}: no checkpoints/step-*.ckpt to evaluate; train the run first")
    data = ckpt.load_checkpoint(latest)
    dev = resolve_device(device)
    scene = read_dataparser_transforms(run_dir / "dataparser_transforms.json")
    dset = load_any_dataset(dataset if dataset is not None else config.dataset)
    _, eval_idx, split = split_indices(dset, config.data.hold_every)
    eval_idx = eval_idx[:: config.data.eval_view_stride]
    if not eval_idx:
        raise CheckpointError(f"{dset.root}: the dataset has no held-out views to evaluate")
    model = make_model(config, data["scene"]["aabb"], int(data["scene"]["num_images"]), dev)
    model.load_state_dict(data["model"])
    views = load_views(dset, eval_idx, scene, config.data.max_image_side)
    metrics = evaluate_views(model, views, dev, config.eval_chunk, progress, save_images)
    state = data["trainer"]
    metrics.update(
        split=split,
        eval_views=len(views),
        steps=int(data["step"]),
        train_seconds=float(state["train_seconds"]),
        device=str(dev),
        samples_per_second=state["total_samples"] / max(state["train_seconds"], 1e-9),
        rays_per_second=state["total_rays"] / max(state["train_seconds"], 1e-9),
        encoding_backend=encoding_backend(model),
    )
    write_metrics(run_dir / "metrics.json", metrics)
    return metrics
