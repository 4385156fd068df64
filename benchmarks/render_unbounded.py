"""Render speed of a trained unbounded (proposal-sampled) run: the old path, the fast proposal path (torch) and
the same paths through the fused C++ loop, in one process.

Arms (``ARMS``): "reference" (``model.inference.proposal = "reference"`` with ``skip.kernel = "torch"``: every
proposal and field sample queried, as trained, pure torch: the old path); "fast" (``nerf/fast_proposal.py``:
fewer samples per ray and early ray termination, through the torch path); "fast-cpp" (the same samples through
``nerf/field_cpu.py``'s fused per-ray C++ loop: what ``nerfstage render`` runs by default); "exact-cpp" (the
trained samples through that loop). For each: wall seconds of the first held-out view's pose at 800x533 and
1920x1080 (same vertical field of view, ``render.image.render_image`` as ``nerfstage render`` renders), network
queries per ray, and the held-out PSNR / SSIM over the run's held-out views at its evaluation size; then the PSNR
of each arm's frames against the old path's.

    .venv/bin/python benchmarks/render_unbounded.py --run /work/bench/unbounded/office_run/run
    .venv/bin/python benchmarks/render_unbounded.py --run RUN --no-psnr --no-1080p --timing-rounds 3 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402  (first: it sets OpenMP's wait policy before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

SIZES = {"800x533": (800, 533), "1920x1080": (1920, 1080)}
ARMS = {"reference": ("reference", "torch"), "fast": ("fast", "torch"), "fast-cpp": ("fast", "cpp"),
        "exact-cpp": ("reference", "cpp")}
"""name: (``inference.proposal``, ``inference.skip.kernel``)."""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained proposal-sampled run folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-1080p", action="store_true", help="skip the 1920x1080 frames")
    parser.add_argument("--no-psnr", action="store_true", help="skip the held-out PSNR of both paths")
    parser.add_argument("--rebake", action="store_true", help="delete the cached grids first (times the bake)")
    parser.add_argument("--bake-resolution", type=int, default=None, help="cells per side (BakeOptions default)")
    parser.add_argument("--skip-opacity", type=float, default=None, help="SkipOptions.skip_opacity")
    parser.add_argument("--stop-transmittance", type=float, default=None, help="SkipOptions.stop_transmittance")
    parser.add_argument("--profile", action="store_true", help="cProfile one more 800x533 'fast' frame")
    parser.add_argument("--timing-rounds", type=int, default=0,
                        help="then N rounds of 800x533 frames, every arm in turn (same load for each)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    return parser.parse_args()


def configure(model, args) -> None:
    """Apply the bake / skip overrides of the command line to ``model.inference``."""
    import dataclasses

    inf = model.inference
    if args.bake_resolution is not None:
        inf.bake = dataclasses.replace(inf.bake, resolution=args.bake_resolution)
    if args.skip_opacity is not None:
        inf.skip = dataclasses.replace(inf.skip, skip_opacity=args.skip_opacity)
    if args.stop_transmittance is not None:
        inf.skip = dataclasses.replace(inf.skip, stop_transmittance=args.stop_transmittance)


class Counter:
    """Counts rays and network queries through ``model.render_rays``."""

    def __init__(self, model):
        self.model, self.original, self.rays, self.queries = model, model.render_rays, 0, 0

    def __enter__(self):
        def counted(origins, *a, **k):
            out = self.original(origins, *a, **k)
            self.rays += len(origins)
            self.queries += int(out.get("num_evaluated", -1))
            return out

        self.model.render_rays = counted
        return self

    def __exit__(self, *exc):
        del self.model.render_rays


def render_frame(run, pose, fov_y: float, size: tuple[int, int]) -> tuple[float, np.ndarray, float]:
    """(wall seconds, rgb [H, W, 3], network queries per ray or -1) of one frame."""
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image

    camera = PerspectiveCamera.from_fov(size[0], size[1], fov_y)
    with Counter(run.model) as count:
        start = time.perf_counter()
        rgb = render_image(run.model, camera, pose, ("rgb",), ImageOptions())["rgb"]
        seconds = time.perf_counter() - start
    per_ray = count.queries / max(count.rays, 1) if count.queries >= 0 else -1.0
    return seconds, np.asarray(rgb), per_ray


def held_out(run) -> dict:
    from nerfstage.nerf.data import load_views
    from nerfstage.nerf.evaluate import evaluate_views

    eval_idx = run.cameras.eval_indices[:: run.config.data.eval_view_stride]
    views = load_views(run.dataset, eval_idx, run.scene, run.config.data.max_image_side)
    start = time.perf_counter()
    metrics = evaluate_views(run.model, views, run.config.eval_chunk)
    metrics["seconds_per_view"] = (time.perf_counter() - start) / len(views)
    return metrics


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def set_arm(model, name: str) -> None:
    """Switch ``model.inference`` to arm ``name`` of ``ARMS``."""
    import dataclasses

    path, kernel = ARMS[name]
    model.inference.proposal = path
    model.inference.skip = dataclasses.replace(model.inference.skip, kernel=kernel)


def timing_rounds(run, pose, fov_y: float, rounds: int, arms: list[str]) -> None:
    """``rounds`` rounds of one 800x533 frame per arm in turn; medians."""
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name in arms:
            set_arm(run.model, name)
            seconds[name].append(render_frame(run, pose, fov_y, SIZES["800x533"])[0])
    for name, values in seconds.items():
        print(f"rounds 800x533 {name}: median {float(np.median(values)):.2f} s of {[round(v, 2) for v in values]}")


def main() -> int:
    args = parse()
    from nerfstage.nerf.baked import CACHE_NAME
    from nerfstage.nerf.run import load_run

    torch.set_num_threads(args.threads)
    run = load_run(args.run, device="cpu")
    if run.model.proposal is None:
        print(f"{args.run}: not a proposal-sampled run; nothing to compare", file=sys.stderr)
        return 2
    configure(run.model, args)
    index = run.cameras.eval_indices[0]
    intr = run.intrinsics[index]
    fov_y = math.degrees(2.0 * math.atan(intr.height / 2.0 / intr.fy))
    pose = run.world_from_cams[index]
    sizes = {k: v for k, v in SIZES.items() if not (args.no_1080p and k == "1920x1080")}
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; run {args.run} step {run.step}")
    if args.rebake:
        (Path(args.run) / CACHE_NAME).unlink(missing_ok=True)
    start = time.perf_counter()
    baked = run.model.baked_grids()
    print(f"baked grids ({'baked' if args.rebake else 'cache or bake'}): {time.perf_counter() - start:.1f} s, "
          f"{baked.resolution}^3 cells, occupied (bound >= 1) per stage "
          f"{[round(baked.occupied_fraction(s, 1.0), 4) for s in range(len(baked.grids))]}")
    arms = [a for a in args.arms.split(",") if a]
    frames: dict[str, dict[str, np.ndarray]] = {}
    for arm in arms:
        set_arm(run.model, arm)
        frames[arm] = {}
        for name, size in sizes.items():
            seconds, rgb, per_ray = render_frame(run, pose, fov_y, size)
            frames[arm][name] = rgb
            print(f"{arm:10s} {name}: {seconds:.2f} s" + (f", {per_ray:.1f} queries per ray" if per_ray >= 0 else ""))
        if not args.no_psnr:
            m = held_out(run)
            print(f"{arm:10s} held-out PSNR {m['psnr']:.3f} dB, SSIM {m['ssim']:.4f} over {len(m['per_view'])} views "
                  f"({m['seconds_per_view']:.2f} s per view)")
    first = arms[0]
    for arm in arms[1:]:
        for name in sizes:
            print(f"{name}: PSNR {arm} vs {first} {psnr_db(frames[arm][name], frames[first][name]):.1f} dB")
    if args.timing_rounds > 0:
        timing_rounds(run, pose, fov_y, args.timing_rounds, arms)
    print(f"load average at the end: {machine()}")
    if args.profile:
        set_arm(run.model, "fast")
        profiler = cProfile.Profile()
        profiler.enable()
        render_frame(run, pose, fov_y, SIZES["800x533"])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return 0


if __name__ == "__main__":
    sys.exit(main())
