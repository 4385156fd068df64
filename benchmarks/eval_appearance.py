"""Held-out PSNR / SSIM of a trained run under different appearance choices for the held-out views (issue 14's
"per-image appearance at eval as nerfstudio evaluates it"):

* ``mean`` -- the mean of the training images' embeddings (ours, and nerfacto's default
  ``use_average_appearance_embedding=True``);
* ``zero`` -- a zero embedding (nerfacto with ``use_average_appearance_embedding=False``);
* ``nearest`` -- the embedding of the training image whose camera centre is nearest (a neighbour's exposure).

Same renderer and views as ``nerfstage eval`` (the training-time evaluation path); prints one line per choice.

    .venv/bin/python benchmarks/eval_appearance.py RUN [--choices mean,zero,nearest]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import machine  # noqa: E402  (first: OpenMP wait policy)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--choices", default="mean,zero,nearest")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def nearest_train_image(run, eval_index: int) -> int:
    """Position (in the training embedding table) of the training camera nearest to held-out camera ``eval_index``."""
    train = run.train_indices
    centres = run.world_from_cams[train][:, :3, 3]
    return int(np.argmin(np.linalg.norm(centres - run.world_from_cams[eval_index][:3, 3], axis=1)))


def evaluate(run, views, eval_idx: list[int], choice: str) -> dict:
    """Mean PSNR / SSIM over the held-out views with appearance ``choice`` (see the module docstring)."""
    import torch

    from nerfstage.nerf.evaluate import render_view
    from nerfstage.nerf.metrics import psnr, ssim

    table = run.model.field.appearance.weight  # [N, A]; every render path uses its mean for held-out views
    original = table.detach().clone()
    scores = []
    for v, index in enumerate(eval_idx):
        with torch.no_grad():
            if choice == "zero":
                table.zero_()
            elif choice == "nearest":
                table.copy_(original[nearest_train_image(run, index)].expand_as(table))
            pred, target = render_view(run.model, views, v, run.config.eval_chunk)
            table.copy_(original)
        scores.append((psnr(pred, target), ssim(pred, target)))
    return {"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))}


def main() -> int:
    args = parse()
    import torch

    from nerfstage.nerf.data import load_views
    from nerfstage.nerf.run import load_run, require_dataset

    torch.set_num_threads(args.threads)
    run = load_run(args.run, "cpu")
    run.model.inference.proposal = "reference"  # the training-time evaluation path (metrics.json's)
    if run.model.field.appearance is None:
        print(f"{args.run}: the model has no appearance embeddings; nothing to compare")
        return 1
    eval_idx = run.cameras.eval_indices[:: run.config.data.eval_view_stride]
    views = load_views(require_dataset(run), eval_idx, run.scene, run.config.data.max_image_side)
    print(f"machine: {machine()}")
    for choice in args.choices.split(","):
        start = time.perf_counter()
        figures = evaluate(run, views, eval_idx, choice)
        print(f"appearance {choice:8s} held-out PSNR {figures['psnr']:.3f} dB  SSIM {figures['ssim']:.4f}  "
              f"({len(eval_idx)} views, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
