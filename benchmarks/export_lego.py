"""Exports of the lego run: mesh (faces, seconds, a PNG preview) and an 8192x4096 EXR latlong plate on CPU.

Goals (issue 5): the 8192 x 4096 plate in at most 10 minutes of wall time with at most 4 GiB peak memory. Each
part runs in its own child process so its peak resident memory (``ru_maxrss``: model, buffers, torch, everything)
is its own. The plate is compared in the same invocation with a peer: a 2048 x 1024 latlong rendered in one pass
(``tile_size=0``), as seconds per megapixel. The mesh preview (``mesh_preview.png``) is drawn by a plain painter's
rasteriser (faces sorted by depth, flat Lambert shading of the vertex colours), two views side by side.

Usage: ``python benchmarks/export_lego.py [--run RUN (default $NERFSTAGE_LEGO_RUN)] [--work DIR]
[--resolution 256] [--max-faces 300000] [--width 8192] [--peer-width 2048] [--camera-index 0]
[--parts mesh,peer,plate] [--plate-timeout 900] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, work_dir  # noqa: E402


def peak_rss_gib() -> float:
    """Peak resident memory of this process, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def preview(mesh, path: Path, size: int = 640) -> None:
    """Two views (front three-quarter, top) of a vertex-coloured mesh, painter's algorithm with cv2."""
    import cv2

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces)
    colours = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3][faces].mean(axis=1)  # [F, 3]
    normals = np.asarray(mesh.face_normals)
    centre, radius = vertices.mean(axis=0), np.linalg.norm(vertices - vertices.mean(axis=0), axis=1).max()
    panels = []
    for azimuth, elevation in ((35.0, 25.0), (0.0, 89.0)):
        a, e = np.radians(azimuth), np.radians(elevation)
        view = np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])  # towards the viewer
        right = np.cross([0.0, 0.0, 1.0], view)
        right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0.0, 0.0])
        up = np.cross(view, right)
        local = vertices - centre
        xy = np.stack([local @ right, -(local @ up)], axis=1) / (2.05 * radius) * size + size / 2  # [V, 2] pixels
        depth = (local @ view)[faces].mean(axis=1)
        shade = 0.25 + 0.75 * np.clip(normals @ (0.6 * view + 0.4 * up), 0.0, 1.0)
        panel = np.full((size, size, 3), 255, np.uint8)
        for f in np.argsort(depth):  # far to near
            colour = tuple(int(c) for c in (colours[f] * shade[f])[::-1])  # BGR
            cv2.fillConvexPoly(panel, np.round(xy[faces[f]] * 16).astype(np.int32), colour, cv2.LINE_AA, shift=4)
        panels.append(panel)
    cv2.imwrite(str(path), np.concatenate(panels, axis=1))


def part_mesh(args, work: Path) -> dict:
    import trimesh

    from nerfstage.export.from_run import MeshExportOptions, export_mesh
    from nerfstage.nerf.run import load_run

    run = load_run(args.run, device="cpu")
    start = time.perf_counter()
    result = export_mesh(run, work / "lego.glb", MeshExportOptions(resolution=args.resolution,
                                                                   max_faces=args.max_faces, progress=False))
    seconds = time.perf_counter() - start
    mesh = trimesh.load(work / "lego.glb", force="mesh", process=False)
    mesh.apply_transform(np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))  # Y-up -> Z-up
    preview(mesh, work / "mesh_preview.png")
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    return {"faces": int(result.stats["faces"]), "vertices": int(result.stats["vertices"]),
            "threshold": result.stats["threshold"], "seconds": seconds, "extents": mesh.extents.tolist(),
            "colour_mean": colours.mean(axis=0).tolist(), "peak_rss_gib": peak_rss_gib(),
            "files": [str(f) for f in result.files] + [str(work / "mesh_preview.png")]}


def part_panorama(args, work: Path, width: int, tile_size: int) -> dict:
    from nerfstage.export.panorama import PanoramaOptions, export_panorama
    from nerfstage.nerf.run import load_run

    run = load_run(args.run, device="cpu")
    camera = None if args.camera_index < 0 else args.camera_index  # -1: the scene centre
    options = PanoramaOptions(width=width, camera_index=camera, tile_size=tile_size, progress=True,
                              overwrite=True)
    result = export_panorama(run, work / f"plate_{width}.exr", options)
    megapixels = result.width * result.height / 1e6
    return {"width": result.width, "height": result.height, "tiles": result.tiles, "seconds": result.seconds,
            "seconds_per_megapixel": result.seconds / megapixels, "peak_tile_bytes": result.peak_tile_bytes,
            "peak_rss_gib": peak_rss_gib(), "file": str(result.files[0]),
            "file_mib": result.files[0].stat().st_size / 2**20}


def child(args, part: str, timeout: float | None) -> dict:
    """Run one part in a fresh process; its result dict (or the error / timeout)."""
    command = [sys.executable, __file__, "--child", part, "--run", str(args.run), "--work", str(args.work_dir),
               "--resolution", str(args.resolution), "--width", str(args.width), "--peer-width",
               str(args.peer_width), "--camera-index", str(args.camera_index), "--threads", str(args.threads)]
    if args.max_faces:
        command += ["--max-faces", str(args.max_faces)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - start}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit code {done.returncode}", "wall_s": time.perf_counter() - start}
    return json.loads(lines[-1]) | {"wall_s": time.perf_counter() - start}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.environ.get("NERFSTAGE_LEGO_RUN"), help="lego run folder")
    parser.add_argument("--work", default=None, help="output folder (emptied; default: a temp folder)")
    parser.add_argument("--resolution", type=int, default=256, help="mesh grid samples along the longest axis")
    parser.add_argument("--max-faces", type=int, default=300_000, help="decimate the mesh to this many faces")
    parser.add_argument("--width", type=int, default=8192, help="plate width (height = width / 2)")
    parser.add_argument("--peer-width", type=int, default=2048, help="single-pass peer panorama width")
    parser.add_argument("--camera-index", type=int, default=0, help="panorama from this training camera (-1: from the scene centre, inside the model: every ray hits)")
    parser.add_argument("--parts", default="mesh,peer,plate", help="comma-separated: mesh, peer, plate")
    parser.add_argument("--plate-timeout", type=float, default=900.0, help="seconds allowed for the plate")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse()
    if not args.run:
        sys.exit("give --run RUN or set NERFSTAGE_LEGO_RUN")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        work = Path(args.work)
        result = part_mesh(args, work) if args.child == "mesh" else part_panorama(
            args, work, args.width if args.child == "plate" else args.peer_width, 1024 if args.child == "plate" else 0)
        print(json.dumps(result))
        return
    args.work_dir = work_dir(args.work, "export-lego")
    print(f"machine: {machine()}; run {args.run}; work {args.work_dir}")
    results = {}
    for part in args.parts.split(","):
        results[part] = child(args, part, args.plate_timeout if part == "plate" else None)
        print(f"{part}: {json.dumps(results[part])}", flush=True)
    if "peer" in results and "plate" in results and "error" not in results["plate"] | results["peer"]:
        ratio = results["plate"]["seconds_per_megapixel"] / results["peer"]["seconds_per_megapixel"]
        print(f"plate {args.width}x{args.width // 2}: {results['plate']['seconds']:.0f} s (goal <= 600), peak RSS "
              f"{results['plate']['peak_rss_gib']:.2f} GiB (goal <= 4); seconds per megapixel {ratio:.2f}x the "
              f"single-pass {args.peer_width}x{args.peer_width // 2} peer")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
