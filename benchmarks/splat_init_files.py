"""Splats placed from a trained run (``export/splats_init.py``) and written in every splat format (issue 16).

Prints: init seconds, points back-projected, voxel, splats; per format the file size, write and read seconds;
SPZ's round-trip error against the splats (positions, log scales, colour). Run under the shared lock::

    flock /work/bench.lock nice -n 10 .venv/bin/python benchmarks/splat_init_files.py --run RUN --out DIR
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="A trained run folder (e.g. train_lego.py's).")
    parser.add_argument("--out", type=Path, required=True, help="Scratch folder for the files.")
    parser.add_argument("--max-splats", type=int, default=500_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from nerfstage.export.splats_init import SplatInitOptions, splats_from_run
    from nerfstage.nerf.run import load_run
    from nerfstage.render.splats.io import read_splats, write_splats

    print(f"load {os.getloadavg()[0]:.2f}")
    run = load_run(args.run, device="cpu")
    start = time.perf_counter()
    stats: dict = {}
    splats = splats_from_run(run, SplatInitOptions(max_splats=args.max_splats), stats=stats)
    print(f"init {time.perf_counter() - start:.1f} s: {stats['points']} points, voxel {stats['voxel']:.4f}, "
          f"{splats.num_splats} splats")
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix in (".ply", ".spz", ".glb"):
        path = args.out / f"scene{suffix}"
        start = time.perf_counter()
        write_splats(path, splats, overwrite=True)
        written = time.perf_counter() - start
        start = time.perf_counter()
        back = read_splats(path)
        read = time.perf_counter() - start
        err = {name: (getattr(back, name) - getattr(splats, name)).abs().max().item()
               for name in ("means", "log_scales")}
        dc = (back.sh[:, 0] - splats.sh[:, 0]).abs().max().item()
        print(f"{suffix}: {path.stat().st_size / 1e6:.1f} MB ({path.stat().st_size / splats.num_splats:.1f} B/splat), "
              f"write {written:.2f} s, read {read:.2f} s, max error means {err['means']:.2e}, log scales "
              f"{err['log_scales']:.2e}, f_dc {dc:.2e}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
