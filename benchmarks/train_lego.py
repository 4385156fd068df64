"""Lego (NeRF-synthetic, 400x400) benchmark: ``--preset default`` on the CPU with 2 threads must reach a test
PSNR of at least 28 dB within 15 minutes of wall clock, evaluation on every 8th test view included.

    .venv/bin/python benchmarks/train_lego.py                      # the benchmark as specified
    .venv/bin/python benchmarks/train_lego.py --device cuda --time-budget 60 --preset default   # on a GPU
    .venv/bin/python benchmarks/train_lego.py --steps 3 --max-image-side 40 --eval-stride 100   # smoke (gpu_check)

Prints PSNR, SSIM, minutes, samples/s, the backend and the machine; exits 1 when a bar is missed. The run folder
(default: a fresh temporary folder) keeps metrics.json, checkpoints and the eval renders (``--save-images``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _common import add_row, train_config

REPO = Path(__file__).resolve().parents[1]
PSNR_BAR, MINUTES_BAR = 28.0, 15.0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("NERFSTAGE_DATA", REPO.parent / "shared" / "data")) / "lego_400"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--out", type=Path, default=None, help="run folder (replaced); default: a temp folder")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="training seconds (default: the preset's)")
    parser.add_argument("--eval-stride", type=int, default=8, help="evaluate every Nth test view")
    parser.add_argument("--save-images", type=Path, default=None)
    parser.add_argument("--max-image-side", type=int, default=None,
                        help="downscale the images to this longest side (default: the preset's)")
    parser.add_argument("--row-file", type=Path, default=None, help="append the result row of gpu_check.sh here")
    return parser.parse_args()


def main() -> int:
    args = parse()
    from nerfstage.nerf.trainer import train

    config = train_config(args)
    data = dataclasses.replace(config.data, eval_view_stride=args.eval_stride)
    if args.max_image_side is not None:
        data = dataclasses.replace(data, max_image_side=args.max_image_side)
    config = dataclasses.replace(config, data=data)
    out = args.out or Path(tempfile.mkdtemp(prefix="nerfstage-lego-")) / "run"
    start = time.perf_counter()
    metrics = train(args.data, out, config, overwrite=True, progress=True, save_images=args.save_images)
    minutes = (time.perf_counter() - start) / 60.0
    load = os.getloadavg()[0]
    print(f"lego_400 {args.preset} on {metrics['device']} ({args.threads} threads, {platform.machine()}, "
          f"load avg {load:.1f}), backend {metrics.get('encoding_backend')}")
    print(f"test PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  ({metrics['eval_views']} views)  "
          f"wall {minutes:.2f} min (train {metrics['train_seconds'] / 60:.2f}, eval "
          f"{metrics['eval_seconds'] / 60:.2f})  steps {metrics['steps']}  "
          f"samples/s {metrics['samples_per_second']:.0f}  rays/s {metrics['rays_per_second']:.0f}")
    summary = {k: v for k, v in metrics.items() if k != "per_view"} | {"wall_minutes": minutes, "run": str(out)}
    print(json.dumps(summary))
    ok = metrics["psnr"] >= PSNR_BAR and minutes <= MINUTES_BAR
    print(f"{'PASS' if ok else 'FAIL'}: bar PSNR >= {PSNR_BAR} dB within {MINUTES_BAR} min")
    add_row(args.row_file, f"lego train ({args.preset}, {metrics['device']})",
            f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, {metrics['steps']} steps in "
            f"{metrics['train_seconds']:.1f} s, {metrics['samples_per_second']:,.0f} samples/s, "
            f"wall {minutes * 60:.0f} s, backend {metrics.get('encoding_backend')}, bar {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
