"""office_360 (64 real iPhone frames orbiting a table in an open office: an unbounded indoor scene): train with a
preset, print the held-out PSNR / SSIM (every 8th frame held out), the training minutes, which sampler ran
(``ModelConfig.sampler``: "auto" picks proposal networks or the occupancy grid per scene), and the wall time of
rendering the first held-out view at 800x533 (and, with ``--render-1080p``, at 1920x1080). Every held-out render
is saved beside its ground truth (``OUT/renders/*_vs_gt.png``; the first also as ``OUT/office_eval_vs_gt.png``).

    .venv/bin/python benchmarks/train_office.py --out /tmp/office_bench
    .venv/bin/python benchmarks/train_office.py --sampler occupancy    # the A/B's other arm
    .venv/bin/python benchmarks/train_office.py --time-budget 300 --pose-refinement SO3xR3   # issue 14's A/Bs
    .venv/bin/python benchmarks/train_office.py --time-budget 300 --coarse-to-fine 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

from _common import data_root, machine, train_config, work_dir  # noqa: E402  (first: OpenMP wait policy)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_root() / "office_360")
    parser.add_argument("--out", default=None, help="output folder (replaced); default: a temp folder")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="training seconds (default: the preset's)")
    parser.add_argument("--sampler", choices=["auto", "occupancy", "proposal"], default=None,
                        help="ray sampler (default: the config's, auto)")
    parser.add_argument("--max-image-side", type=int, default=None, help="training/eval image size (preset's)")
    parser.add_argument("--pose-refinement", choices=["off", "SO3xR3"], default=None,
                        help="per-image camera-pose refinement (default: the config's, off)")
    parser.add_argument("--coarse-to-fine", type=float, default=None,
                        help="fraction of the run over which hash-grid levels open (default: the config's, 0)")
    parser.add_argument("--render-1080p", action="store_true", help="also time a 1920x1080 held-out view")
    return parser.parse_args()


def render_seconds(run_dir: Path, width: int, height: int, out: Path) -> float:
    """Wall seconds to render the first held-out camera of the run at ``width`` x ``height`` (same vertical
    field of view); the frame is saved as ``OUT/office_WxH.png``."""
    import cv2
    import numpy as np

    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.nerf.run import load_run
    from nerfstage.render.image import ImageOptions, render_image

    run = load_run(run_dir, device="auto")
    index = run.cameras.eval_indices[0]
    intr = run.intrinsics[index]
    fov_y = math.degrees(2.0 * math.atan(intr.height / 2.0 / intr.fy))
    camera = PerspectiveCamera.from_fov(width, height, fov_y)
    start = time.perf_counter()
    rgb = render_image(run.model, camera, run.world_from_cams[index], ("rgb",), ImageOptions())["rgb"]
    seconds = time.perf_counter() - start
    image = (np.clip(np.asarray(rgb), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    cv2.imwrite(str(out / f"office_{width}x{height}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return seconds


def main() -> int:
    args = parse()
    from nerfstage.nerf.trainer import train

    config = train_config(args)
    if args.sampler is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, sampler=args.sampler))
    if args.pose_refinement is not None:
        config = dataclasses.replace(config, pose_refinement=args.pose_refinement)
    if args.coarse_to_fine is not None:
        config = dataclasses.replace(config, coarse_to_fine=args.coarse_to_fine)
    if args.max_image_side is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, max_image_side=args.max_image_side))
    out = work_dir(args.out, "office")
    renders = out / "renders"
    start = time.perf_counter()
    metrics = train(args.data, out / "run", config, progress=True, save_images=renders)
    minutes = (time.perf_counter() - start) / 60.0
    pairs = sorted(renders.glob("*_vs_gt.png"))
    if pairs:
        shutil.copyfile(pairs[0], out / "office_eval_vs_gt.png")
    sizes = [(800, 533)] + ([(1920, 1080)] if args.render_1080p else [])
    timings = {f"{w}x{h}": render_seconds(out / "run", w, h, out) for w, h in sizes}
    print(f"machine: {machine()}")
    print(f"office_360 held-out PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  "
          f"({metrics['eval_views']} views, split {metrics['split']})  wall {minutes:.2f} min  "
          f"steps {metrics['steps']}  rays/s {metrics['rays_per_second']:.0f}  sampler {metrics['sampler']}  "
          f"device {metrics['device']}")
    print("render of the first held-out view: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    print(f"side by side (ground truth | render): {out / 'office_eval_vs_gt.png'}")
    print(json.dumps({**{k: v for k, v in metrics.items() if k != "per_view"}, "render_seconds": timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
