"""Render speed: seconds per 1920x1080 frame of a properly trained run (CPU goal: at most 10 s with the default
preset's lego run; GPU goal: 30 frames/s).

The run is ``--run`` (default ``$NERFSTAGE_LEGO_RUN``; train one with ``benchmarks/train_lego.py``: a run trained
for a few steps has a fully occupied grid and measures nothing). The frame is shot from a held-out (test) view's
pose with that view's vertical field of view, through ``render.image.render_image`` exactly as ``nerfstage render``
renders, after one warm-up frame of the same size. Printed: seconds per frame, rays/s, kept and evaluated samples
per ray, the occupancy grid's occupied fraction, and the peer in the same run: the reference marcher
(``model.inference.method = "reference"``, the marching before the fast inference path) on the same pose at
``--peer-scale`` of the resolution, as a rays/s ratio (both measured under the same load).

Usage: ``python benchmarks/render_speed.py --run RUN [--width 1920 --height 1080] [--frames 1]
[--max-rays-per-chunk 65536] [--peer-scale 0.125] [--threads 2] [--device auto] [--profile] [--row-file F]``
(``--peer-scale 0`` skips the peer; ``--row-file`` appends the frames/s row of ``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_row, machine  # noqa: E402  (first: it sets OpenMP's wait policy before torch loads)

import torch  # noqa: E402


class SampleCounter:
    """Wraps ``model.render_rays`` to count rays, kept samples and density evaluations."""

    def __init__(self, model):
        self.model, self.original = model, model.render_rays
        self.rays = self.samples = self.evaluated = 0
        self.cpu = 0.0

    def __enter__(self):
        def counted(origins, *args, **kwargs):
            out = self.original(origins, *args, **kwargs)
            self.rays += len(origins)
            self.samples += int(out["num_samples"])
            self.evaluated += int(out.get("num_evaluated", out["num_samples"]))
            return out

        self.model.render_rays = counted
        return self

    def __exit__(self, *exc):
        del self.model.render_rays  # back to the class method


def test_view(run):
    """(camera pose [4, 4], vertical fov in degrees) of the first held-out view of the run."""
    held_out = [i for i in range(len(run.world_from_cams)) if i not in set(run.train_indices)]
    index = held_out[0] if held_out else 0
    intr = run.intrinsics[index]
    return run.world_from_cams[index], math.degrees(2.0 * math.atan(intr.height / 2.0 / intr.fy))


def time_frame(run, camera, pose, options) -> tuple[float, SampleCounter]:
    """Wall seconds to render one frame (rgb + alpha) and its sample counts (``counter.cpu``: CPU seconds of this
    process, a figure less sensitive to other jobs on a shared machine)."""
    from nerfstage.render.image import render_image

    with SampleCounter(run.model) as counter:
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        render_image(run.model, camera, pose, ("rgb", "alpha"), options)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
    counter.cpu = time.process_time() - cpu
    return time.perf_counter() - start, counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.environ.get("NERFSTAGE_LEGO_RUN"),
                        help="Trained run folder (default: $NERFSTAGE_LEGO_RUN).")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=1, help="Timed frames (after one warm-up frame).")
    parser.add_argument("--max-rays-per-chunk", type=int, default=1 << 16)
    parser.add_argument("--peer-scale", type=float, default=0.125, help="Resolution scale of the reference peer.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", action="store_true", help="cProfile one more frame and list the top functions.")
    parser.add_argument("--row-file", type=Path, default=None, help="Append the result row of gpu_check.sh here.")
    args = parser.parse_args()
    if not args.run:
        parser.error("give --run RUN (a trained run, e.g. benchmarks/train_lego.py's) or set NERFSTAGE_LEGO_RUN")

    from nerfstage.nerf.run import load_run
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions

    torch.set_num_threads(args.threads)
    run = load_run(Path(args.run), device=args.device)
    pose, fov_y = test_view(run)
    camera = PerspectiveCamera.from_fov(args.width, args.height, fov_y)
    options = ImageOptions(max_rays_per_chunk=args.max_rays_per_chunk)
    warm, _ = time_frame(run, camera, pose, options)
    measured = [time_frame(run, camera, pose, options) for _ in range(args.frames)]
    per_frame = sum(t for t, _ in measured) / len(measured)
    count = measured[-1][1]
    rays = args.width * args.height
    print(f"machine: {machine()}; device {run.device}, torch threads {torch.get_num_threads()}, inference threads "
          f"{run.model.inference.threads!r} (\"auto\": 1 while the load average exceeds the cores)")
    print(f"run {args.run}: step {run.step}, occupied fraction {run.model.occupancy.occupied_fraction():.4f}")
    print(f"{args.width}x{args.height} (test-view pose, fov_y {fov_y:.1f} deg): {per_frame:.2f} s per frame "
          f"({1.0 / per_frame:.2f} frames/s), {rays / per_frame:,.0f} rays/s over {len(measured)} frame(s) "
          f"(warm-up {warm:.2f} s; CPU time {count.cpu:.2f} s per frame); samples per ray "
          f"{count.samples / count.rays:.2f} kept, {count.evaluated / count.rays:.2f} evaluated; "
          f"goal {'<= 10 s per frame (CPU)' if run.device.type == 'cpu' else '>= 30 frames/s (GPU)'}")
    add_row(args.row_file, f"render {args.width}x{args.height} ({run.device})",
            f"{1.0 / per_frame:.2f} frames/s ({per_frame:.3f} s per frame, {rays / per_frame:,.0f} rays/s, "
            f"{count.samples / count.rays:.1f} samples per ray), step {run.step}")
    if args.peer_scale > 0:
        peer_camera = PerspectiveCamera.from_fov(max(2, round(args.width * args.peer_scale)),
                                                 max(2, round(args.height * args.peer_scale)), fov_y)
        compare_with_reference(run, peer_camera, pose, options)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        time_frame(run, camera, pose, options)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def compare_with_reference(run, camera, pose, options) -> None:
    """Fast path and reference marcher on the same (smaller) frame: rays/s of each, ratio, image agreement."""
    from nerfstage.nerf.inference import inference_threads
    from nerfstage.render.image import render_image

    rays = camera.width * camera.height
    fast_s, _ = time_frame(run, camera, pose, options)
    fast = render_image(run.model, camera, pose, ("rgb",), options)["rgb"]
    run.model.inference.method = "reference"
    try:  # on the fast path's thread count (see InferenceOptions.threads), so only the marching differs
        with inference_threads(run.model.inference.threads, run.device):
            ref_s, _ = time_frame(run, camera, pose, options)
            ref = render_image(run.model, camera, pose, ("rgb",), options)["rgb"]
    finally:
        run.model.inference.method = "fast"
    mse = float(((fast - ref) ** 2).mean())
    print(f"peer {camera.width}x{camera.height}: fast {rays / fast_s:,.0f} rays/s, reference marcher "
          f"{rays / ref_s:,.0f} rays/s -> speed-up {ref_s / fast_s:.1f}x; image PSNR fast vs reference "
          f"{-10 * math.log10(max(mse, 1e-20)):.1f} dB")


if __name__ == "__main__":
    main()
