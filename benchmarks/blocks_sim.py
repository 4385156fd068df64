"""City-scale plan in miniature (issue 17, ``docs/scale.md``): the synthetic capture split into 2 blocks by camera
position along its walk (Block-NeRF style, with overlap), each block trained as a separate ``nerfstage train`` job,
then a novel camera path across the seam rendered by compositing both blocks (inverse-distance weights of the
camera to each block's camera centroid, power 4, as Block-NeRF) and compared with the synthetic scene's true
images. Prints PSNR near the seam vs inside a block (composited), and each block alone.

Usage: ``python benchmarks/blocks_sim.py [--frames 48] [--size 128x96] [--steps 600] [--overlap 0.15]
[--views 24] [--preset preview] [--work DIR]``. Each block's job runs with 1 thread (the two could run on two
machines at once); run it under the shared lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, work_dir  # noqa: E402  (first: it sets OpenMP's wait policy before torch loads)

import numpy as np  # noqa: E402


def block_dataset(scene: Path, out: Path, keep: list[int]) -> Path:
    """A dataset of the frames ``keep`` of ``scene`` (transforms.json filtered; images linked)."""
    data = json.loads((scene / "transforms.json").read_text())
    data["frames"] = [data["frames"][i] for i in keep]
    out.mkdir(parents=True)
    (out / "images").symlink_to((scene / "images").resolve())
    (out / "transforms.json").write_text(json.dumps(data, indent=1))
    return out


def train_block(dataset: Path, run: Path, preset: str, steps: int) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "nerfstage", "train", str(dataset), "-o", str(run), "--preset", preset,
                    "--steps", str(steps), "--device", "cpu", "-q"], check=True, env=env)
    return json.loads((run / "metrics.json").read_text())


def render_block(run, world_from_cam: np.ndarray, intrinsics) -> np.ndarray:
    """[H, W, 3] float sRGB-encoded render of a dataset-frame pose (OpenGL axes) by a LoadedRun."""
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image

    t = np.asarray(run.scene.transform, dtype=np.float64).reshape(3, 4)
    pose = np.eye(4)
    pose[:3, :3] = t[:, :3] @ world_from_cam[:3, :3]
    pose[:3, 3] = float(run.scene.scale) * (t[:, :3] @ world_from_cam[:3, 3] + t[:, 3])
    camera = PerspectiveCamera.from_intrinsics(intrinsics)
    return render_image(run.model, camera, pose, ("rgb",), ImageOptions(background=(0.0, 0.0, 0.0)))["rgb"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(max(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--overlap", type=float, default=0.15, help="fraction of the walk both blocks share")
    parser.add_argument("--views", type=int, default=24, help="novel views along the walk")
    parser.add_argument("--seam-width", type=float, default=0.15, help="fraction of the walk called 'the seam'")
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    import torch

    from nerfstage.capture.synthetic import SyntheticOptions, render_frame, synthetic_cameras, write_synthetic_dataset
    from nerfstage.nerf.run import load_run

    torch.set_num_threads(1)
    work = work_dir(args.work, "blocks")
    width, height = (int(v) for v in args.size.split("x"))
    options = SyntheticOptions(num_frames=args.frames, width=width, height=height, seed=0)
    write_synthetic_dataset(work / "scene", options)
    n, half = args.frames, args.overlap / 2
    blocks = [list(range(0, int(n * (0.5 + half)))), list(range(int(n * (0.5 - half)), n))]
    print(f"machine: {machine()}; {n} frames {width}x{height}, blocks of {len(blocks[0])} and {len(blocks[1])} "
          f"frames ({len(set(blocks[0]) & set(blocks[1]))} shared), {args.steps} steps each, preset {args.preset}")
    poses, _ = synthetic_cameras(options)
    runs, centres = [], []
    for k, keep in enumerate(blocks):
        metrics = train_block(block_dataset(work / "scene", work / f"block{k}", keep), work / f"run{k}", args.preset,
                              args.steps)
        print(f"block {k}: held-out PSNR {metrics['psnr']:.2f} dB on its own views, {metrics['train_seconds']:.0f} s")
        runs.append(load_run(work / f"run{k}", device="cpu"))
        centres.append(poses[keep, :3, 3].mean(axis=0))
    novel, intrinsics = synthetic_cameras(SyntheticOptions(num_frames=args.views, width=width, height=height, seed=1))
    rows = []
    for i, pose in enumerate(novel):
        truth = render_frame(pose, intrinsics).astype(np.float32) / 255.0
        images = [render_block(run, pose, intrinsics) for run in runs]
        distance = np.array([np.linalg.norm(pose[:3, 3] - c) for c in centres])
        weights = distance ** -4.0 / np.sum(distance ** -4.0)
        composite = sum(w * im for w, im in zip(weights, images))
        where = i / max(args.views - 1, 1)  # position along the walk, 0..1
        rows.append((where, psnr(composite, truth), psnr(images[0], truth), psnr(images[1], truth), weights[0]))
    seam = [r for r in rows if abs(r[0] - 0.5) <= args.seam_width / 2]
    inside = [r for r in rows if abs(r[0] - 0.5) > args.seam_width / 2]
    for name, group in (("seam", seam), ("inside a block", inside)):
        if not group:
            continue
        mean = [np.mean([r[k] for r in group]) for k in (1, 2, 3)]
        print(f"{name}: {len(group)} views, composited PSNR {mean[0]:.2f} dB (block 0 alone {mean[1]:.2f}, "
              f"block 1 alone {mean[2]:.2f})")
    print("per view (position along the walk, composite, block 0, block 1, weight of block 0):")
    for r in rows:
        print(f"  {r[0]:.2f}  {r[1]:.2f}  {r[2]:.2f}  {r[3]:.2f}  {r[4]:.2f}")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
