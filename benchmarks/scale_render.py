"""Render scaling (issue 17): 2 ranks x 1 thread (``torchrun --nproc-per-node 2``) vs 1 rank x 1 thread for a
1920x1080 x 24-frame MP4 render and an 8192x4096 panorama plate of a trained run; prints the speed-ups
(issue bars: >= 1.8x, goal 1.95x). Both are whole-job wall times of the real command lines (start-up, model load,
rendering, barrier and rank 0's assembly included), measured one after the other on the same machine; they need a
QUIET machine (2 ranks on 2 cores). The two outputs are also compared (decoded MP4 frames / EXR pixels equal).

Usage: ``python benchmarks/scale_render.py [--run RUN] [--width 1920 --height 1080 --frames 24]
[--plate-width 8192] [--quick] [--work DIR]``. ``--run`` defaults to ``$NERFSTAGE_LEGO_RUN`` (a short-trained lego
run: ``benchmarks/train_lego.py``); without one, a tiny synthetic run is trained first. ``--quick``: 320x180 x 4
frames and a 512x256 plate (a smoke test of the script, not a figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, work_dir  # noqa: E402  (first: it sets OpenMP's wait policy before torch loads)


def env_one_thread() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def nerfstage(args: list[str], nproc: int) -> float:
    """Wall seconds of ``nerfstage ARGS`` on ``nproc`` ranks of one thread each."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *launcher, "-m", "nerfstage", *args, "--device", "cpu", "-q"],
                          env=env_one_thread(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: nerfstage {' '.join(args)}\n{proc.stderr[-3000:]}")
    return seconds


def tiny_run(work: Path) -> Path:
    """A synthetic scene trained for a few hundred steps (when no lego run is given)."""
    scene, run = work / "scene", work / "run"
    subprocess.run([sys.executable, "-c", "from nerfstage.capture.synthetic import SyntheticOptions, "
                    f"write_synthetic_dataset as w; w({str(scene)!r}, SyntheticOptions(num_frames=24, width=128, "
                    "height=96, seed=0))"], check=True, env=env_one_thread())
    subprocess.run([sys.executable, "-m", "nerfstage", "train", str(scene), "-o", str(run), "--preset", "preview",
                    "--steps", "300", "-q"], check=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    return run


def same_video(a: Path, b: Path) -> bool:
    import av
    import numpy as np

    def frames(path):
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

    fa, fb = frames(a), frames(b)
    return len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))


def same_exr(a: Path, b: Path) -> bool:
    import numpy as np

    from nerfstage.render.writers import read_exr

    ca, cb = read_exr(a)[0], read_exr(b)[0]
    return ca.keys() == cb.keys() and all(np.array_equal(ca[k], cb[k]) for k in ca)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=os.environ.get("NERFSTAGE_LEGO_RUN"))
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--plate-width", type=int, default=8192)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a figure")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    if args.quick:
        args.width, args.height, args.frames, args.plate_width = 320, 180, 4, 512
    work = work_dir(args.work, "scale-render")
    run = Path(args.run) if args.run else tiny_run(work)
    print(f"machine: {machine()}; run {run}")
    shot = ["--path", "orbit", "--width", str(args.width), "--height", str(args.height), "--fps", str(args.frames),
            "--seconds", "1"]
    plate = ["--width", str(args.plate_width), "--tile-size", str(max(64, args.plate_width // 16))]  # 128 tiles
    rows = []
    for name, command, out in (("video", ["render", str(run), *shot, "-o"], "v.mp4"),
                               ("plate", ["export", "panorama", str(run), *plate, "-o"], "p.exr")):
        one = nerfstage([*command, str(work / f"one_{out}")], 1)
        two = nerfstage([*command, str(work / f"two_{out}")], 2)
        check = same_video if out.endswith(".mp4") else same_exr
        equal = check(work / f"one_{out}", work / f"two_{out}")
        rows.append((name, one, two, equal))
        print(f"{name}: 1 rank x 1 thread {one:.1f} s, 2 ranks x 1 thread {two:.1f} s -> speed-up {one / two:.2f}x "
              f"(outputs identical: {equal})", flush=True)
    print(f"sizes: {args.width}x{args.height} x {args.frames} frames; plate {args.plate_width}x{args.plate_width // 2}"
          f"; machine after: {machine()}")


if __name__ == "__main__":
    main()
