"""Render speed: seconds per 1920x1080 frame (CPU goal: at most 10 s) and frames per second on a GPU (goal: 30).

A run of the ``default`` preset is trained briefly on the built-in synthetic capture (or ``--run`` reuses any run
folder), then frames of the default orbit are rendered at 1920x1080 through ``render_image`` exactly as
``nerfstage render`` does. Only rendering is timed (a 1/16-size warm-up frame first takes the one-off costs). With
``--profile`` the time of one frame is split into ray generation, marching (occupancy grid + density pass),
field evaluation + compositing, and the rest, and the slowest functions under cProfile are listed.

Usage: ``python benchmarks/render_speed.py [--run RUN] [--steps 60] [--frames 2] [--width 1920 --height 1080]
[--device auto] [--profile] [--work DIR]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, work_dir  # noqa: E402


def train_brief_run(work: Path, steps: int, device: str) -> Path:
    """A default-preset run trained for ``steps`` steps on a 40-frame 640x480 synthetic capture."""
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset
    from nerfstage.nerf.config import build_config
    from nerfstage.nerf.trainer import train

    write_synthetic_dataset(work / "scene", SyntheticOptions(num_frames=40, width=640, height=480, seed=0))
    config = build_config("default", device=device, steps=steps, time_budget_s=None, checkpoint_every=steps)
    config.data.hold_every = 1000  # hold out frame 0 only: the final evaluation renders one view, not five
    start = time.perf_counter()
    metrics = train(work / "scene", work / "run", config, progress=False)
    print(f"trained {metrics['steps']} steps in {time.perf_counter() - start:.0f} s "
          f"(held-out PSNR {metrics['psnr']:.2f} dB) -> {work / 'run'}")
    return work / "run"


class Splits:
    """Wall-clock seconds per stage, filled by wrapping the model's stages."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def wrap(self, owner, name: str, label: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)
        try:
            yield
        finally:
            setattr(owner, name, original)


def profile_frame(run, camera, pose, options) -> None:
    """Stage split and cProfile top functions of one frame."""
    import nerfstage.render.image as image

    splits = Splits()
    with splits.wrap(image, "generate_ray_batch", "ray generation"), \
            splits.wrap(run.model, "sample", "marching (grid + density pass)"), \
            splits.wrap(run.model, "render_rays", "render_rays total"):
        start = time.perf_counter()
        image.render_image(run.model, camera, pose, ("rgb", "alpha"), options)
        total = time.perf_counter() - start
    marching = splits.seconds.get("marching (grid + density pass)", 0.0)
    field = splits.seconds.get("render_rays total", 0.0) - marching
    print(f"one frame {total:.2f} s: ray generation {splits.seconds.get('ray generation', 0.0):.2f} s, "
          f"marching {marching:.2f} s, field + compositing {field:.2f} s, "
          f"other (copies, buffers) {total - sum(splits.seconds.values()) + marching:.2f} s")
    profiler = cProfile.Profile()
    profiler.enable()
    image.render_image(run.model, camera, pose, ("rgb", "alpha"), options)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="Existing run folder (default: train a brief default-preset run).")
    parser.add_argument("--steps", type=int, default=60, help="Training steps of the brief run.")
    parser.add_argument("--frames", type=int, default=2, help="Timed frames.")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--max-rays-per-chunk", type=int, default=1 << 13)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--work", help="Work folder (emptied; default: a temporary folder).")
    args = parser.parse_args()

    from nerfstage.nerf.run import load_run
    from nerfstage.render.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image
    from nerfstage.render.plan import ShotOptions, build_path, frame_camera, reference_distance

    run_dir = Path(args.run) if args.run else train_brief_run(work_dir(args.work, "render"), args.steps, args.device)
    run = load_run(run_dir, device=args.device)
    cams = run.world_from_cams[run.train_indices]
    shot = ShotOptions(width=args.width, height=args.height, fps=args.frames + 1, seconds=1.0)
    path = build_path(shot, cams, [run.intrinsics[i] for i in run.train_indices])
    focus = reference_distance(path, run.world_from_cams)
    options = ImageOptions(max_rays_per_chunk=args.max_rays_per_chunk)
    warm = PerspectiveCamera.from_fov(max(2, args.width // 16), max(2, args.height // 16), float(path.fov_y_deg[0]))
    start = time.perf_counter()
    render_image(run.model, warm, path.world_from_cams[0], ("rgb", "alpha"), options)  # one-off costs
    warm_seconds = time.perf_counter() - start
    times = []
    for i in range(1, len(path)):
        camera = frame_camera(path, i, shot, focus)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        render_image(run.model, camera, path.world_from_cams[i], ("rgb", "alpha"), options)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timed = times
    per_frame = sum(timed) / len(timed)
    rays = args.width * args.height
    print(f"machine: {machine()}; device {run.device}, torch threads {torch.get_num_threads()}")
    print(f"{args.width}x{args.height}: {per_frame:.2f} s per frame ({1.0 / per_frame:.2f} frames/s), "
          f"{rays / per_frame:,.0f} rays/s over {len(timed)} frames (warm-up {warm_seconds:.2f} s); "
          f"goal {'<= 10 s per frame (CPU)' if run.device.type == 'cpu' else '>= 30 frames/s (GPU)'}")
    if args.profile:
        profile_frame(run, frame_camera(path, 0, shot, focus), path.world_from_cams[0], options)


if __name__ == "__main__":
    main()
