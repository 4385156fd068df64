"""Training scaling (issue 17): samples per second of the whole job, 2 ranks x 1 thread (``nerfstage train --nproc
2``: torch.distributed.run, gloo) vs 1 rank x 1 thread, at the same job batch and steps; prints the speed-up
(issue bars: >= 1.6x, goal 1.85x), the all-reduce volume and the communication seconds per step, and both runs'
held-out PSNR. Samples/s is the job's field samples (summed over the ranks) over rank 0's training seconds
(steps only: evaluation and checkpoint writes excluded, as ``metrics.json`` reports it). Needs a QUIET machine.

Usage: ``python benchmarks/scale_train.py [--dataset DIR] [--preset preview] [--steps 300] [--quick]
[--work DIR]``. ``--dataset`` defaults to the shared lego_400 capture (``NERFSTAGE_DATA``), or to a synthetic
scene when it is absent; ``--quick``: a 64x48 synthetic scene, 30 steps (a smoke test, not a figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, data_root, machine, work_dir  # noqa: E402  (first: sets OpenMP's wait policy)


def env_one_thread() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train(dataset: Path, run: Path, preset: str, steps: int, nproc: int) -> tuple[dict, float]:
    """metrics.json of ``nerfstage train`` on ``nproc`` ranks of one thread each, and the wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nerfstage", "train", str(dataset), "-o", str(run), "--preset",
                           preset, "--steps", str(steps), "--device", "cpu", "--overwrite", "-q",
                           "--nproc", str(nproc)], env=env_one_thread(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({nproc} ranks):\n{proc.stderr[-3000:]}")
    return json.loads((run / "metrics.json").read_text()), time.perf_counter() - start


def synthetic(work: Path, width: int, height: int) -> Path:
    scene = work / "scene"
    subprocess.run([sys.executable, "-c", "from nerfstage.capture.synthetic import SyntheticOptions, "
                    f"write_synthetic_dataset as w; w({str(scene)!r}, SyntheticOptions(num_frames=24, "
                    f"width={width}, height={height}, seed=0))"], check=True, env=env_one_thread())
    return scene


def every_nth_test_view(dataset: Path, work: Path, stride: int) -> Path:
    """A Blender-format ``dataset`` seen with every ``stride``-th test view (links to its folders, a filtered
    transforms_test.json), so the held-out PSNR of both runs costs minutes, not the 200 lego test views; other
    formats are returned as they are."""
    test = dataset / "transforms_test.json"
    if stride <= 1 or not test.exists():
        return dataset
    view = work / f"{dataset.name}-test-every-{stride}"
    view.mkdir(parents=True, exist_ok=True)
    for item in dataset.iterdir():
        if item.name != test.name and not (view / item.name).exists():
            (view / item.name).symlink_to(item.resolve())
    meta = json.loads(test.read_text())
    meta["frames"] = meta["frames"][::stride]
    (view / test.name).write_text(json.dumps(meta))
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic scene: a smoke test, not a figure")
    parser.add_argument("--eval-stride", type=int, default=8, help="evaluate every Nth test view (Blender format)")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = work_dir(args.work, "scale-train")
    if args.quick:
        dataset, args.steps = synthetic(work, 64, 48), 30
    elif args.dataset:
        dataset = Path(args.dataset)
    else:
        lego = data_root() / "lego_400"
        dataset = lego if lego.exists() else synthetic(work, 320, 240)
    dataset = every_nth_test_view(dataset, work, args.eval_stride)
    print(f"machine: {machine()}; dataset {dataset}, preset {args.preset}, {args.steps} steps")
    one, wall_one = train(dataset, work / "one", args.preset, args.steps, 1)
    two, wall_two = train(dataset, work / "two", args.preset, args.steps, 2)
    speedup = two["samples_per_second"] / one["samples_per_second"]
    comm = two["comm_seconds_per_step"]
    step_two = two["train_seconds"] / max(two["steps"], 1)
    print(f"1 rank x 1 thread: {one['samples_per_second']:.0f} samples/s, {one['train_seconds']:.1f} s training, "
          f"{wall_one:.1f} s wall, PSNR {one['psnr']:.2f} dB")
    print(f"2 ranks x 1 thread: {two['samples_per_second']:.0f} samples/s, {two['train_seconds']:.1f} s training, "
          f"{wall_two:.1f} s wall, PSNR {two['psnr']:.2f} dB")
    print(f"speed-up (job samples/s) {speedup:.2f}x; all-reduce {two['allreduce_bytes_per_step'] / 1e6:.2f} MB per "
          f"step per rank, communication {1e3 * comm:.1f} ms of {1e3 * step_two:.1f} ms per step "
          f"({100 * comm / max(step_two, 1e-9):.0f} %)")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
