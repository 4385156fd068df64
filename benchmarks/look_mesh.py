"""Look at an exported mesh the way a person would: rasterise it (software, OpenCV polygons in painter's order)
from training cameras of its dataset and put each picture beside the photo, and print what describes it (faces,
file size, extent against the cameras, components). Writes ``OUT`` as one PNG: per camera a row of
photo | mesh in its vertex colours | mesh shaded by its normals (grey), then a last row with
the mesh and the camera centres (red) from far above and from the side.

    .venv/bin/python benchmarks/look_mesh.py MESH.glb --data ../shared/data/office_360 --frames 0,20 -o look.png

The mesh is read as written by ``nerfstage export mesh`` (GLB/OBJ Y-up are rotated back to the dataset's Z-up;
GLB's linear vertex colours are encoded back to sRGB), so it lines up with ``transforms.json``'s cameras.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import data_root  # noqa: E402  (first: OpenMP wait policy)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mesh", type=Path)
    parser.add_argument("--data", type=Path, default=data_root() / "office_360")
    parser.add_argument("--frames", default="0,20", help="indices into transforms.json's frames (sorted by name)")
    parser.add_argument("--width", type=int, default=480, help="width of each picture")
    parser.add_argument("-o", "--out", type=Path, required=True)
    return parser.parse_args()


def load_mesh(path: Path):
    """The mesh in the dataset frame (Z-up) with sRGB-encoded float vertex colours [v, 3] (grey when none)."""
    import trimesh

    from nerfstage.export.gltf import Y_UP_FROM_Z_UP, read_mesh

    mesh = read_mesh(path)
    if path.suffix.lower() in (".glb", ".obj"):
        mesh.apply_transform(np.linalg.inv(Y_UP_FROM_Z_UP))
    rgb = np.full((len(mesh.vertices), 3), 0.6)
    if isinstance(mesh.visual, trimesh.visual.ColorVisuals) and mesh.visual.kind == "vertex":
        rgb = np.asarray(mesh.visual.vertex_colors[:, :3], dtype=np.float64) / 255.0
        if path.suffix.lower() == ".glb":  # glTF COLOR_0 is linear
            rgb = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055)
    return mesh, rgb


def rasterise(vertices, faces, face_rgb, world_from_cam, fx, fy, cx, cy, width, height) -> np.ndarray:
    """[H, W, 3] float picture of triangles (vertices [v, 3], faces [f, 3], face_rgb [f, 3]) seen by an OpenGL-axes
    camera, far faces drawn first (painter's algorithm; white where nothing is)."""
    import cv2

    local = (vertices - world_from_cam[:3, 3]) @ world_from_cam[:3, :3]  # [v, 3] OpenGL camera axes
    z = -local[:, 2]  # depth in front of the camera
    front = np.all(z[faces] > 1e-3, axis=1)
    u = fx * local[:, 0] / np.maximum(z, 1e-3) + cx
    v = -fy * local[:, 1] / np.maximum(z, 1e-3) + cy
    pixels = np.round(np.stack([u, v], -1) * 16).astype(np.int64)  # 4 fractional bits
    order = np.flatnonzero(front)[np.argsort(-z[faces[front]].mean(axis=1))]
    image = np.ones((height, width, 3), np.float32)
    limit = 1 << 20  # skip faces projecting absurdly far out (a vertex just in front of the camera)
    for f in order:
        tri = pixels[faces[f]]
        if np.abs(tri).max() < limit:
            cv2.fillConvexPoly(image, tri.astype(np.int32), face_rgb[f].tolist(), lineType=cv2.LINE_AA, shift=4)
    return image


def overview_pose(vertices: np.ndarray, poses: np.ndarray, side: bool) -> np.ndarray:
    """[4, 4] OpenGL-axes world_from_cam looking down on (``side`` False) or from the side at everything (mesh
    vertices and camera centres [n, 4, 4]) from far away: the cameras' mean up (their y column) is "up"."""
    up = poses[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    centre = np.concatenate([vertices, poses[:, :3, 3]]).mean(0)
    look = -up if not side else np.cross(up, poses[0, :3, 0])
    look /= np.linalg.norm(look)
    x = np.cross(look, up if side else poses[0, :3, 1])
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, np.cross(-look, x), -look
    pose[:3, 3] = centre - 1000.0 * look
    return pose


def overview(mesh, face_rgb, data: Path, width: int, side: bool) -> np.ndarray:
    """[width, width, 3] nearly orthographic picture of the mesh and the camera centres (red), from far away."""
    import cv2

    meta = json.loads((data / "transforms.json").read_text())
    poses = np.array([f["transform_matrix"] for f in meta["frames"]], dtype=np.float64)
    pose = overview_pose(np.asarray(mesh.vertices), poses, side)
    points = np.concatenate([mesh.vertices, poses[:, :3, 3]])
    local = (points - pose[:3, 3]) @ pose[:3, :3]
    span = np.abs(local[:, :2]).max() * 1.05
    f = 1000.0 * width / 2.0 / span
    image = rasterise(mesh.vertices, np.asarray(mesh.faces), face_rgb, pose, f, f, width / 2, width / 2, width, width)
    u = f * local[len(mesh.vertices):, 0] / -local[len(mesh.vertices):, 2] + width / 2
    v = -f * local[len(mesh.vertices):, 1] / -local[len(mesh.vertices):, 2] + width / 2
    for x, y in zip(u, v, strict=True):
        cv2.circle(image, (int(x), int(y)), 3, (1.0, 0.0, 0.0), -1)
    return image


def camera(data: Path, index: int, width: int):
    """(photo [H, W, 3] float, world_from_cam [4, 4], fx, fy, cx, cy, height) of frame ``index`` at ``width``."""
    import cv2

    meta = json.loads((data / "transforms.json").read_text())
    frames = sorted(meta["frames"], key=lambda f: f["file_path"])
    frame = frames[index]
    s = width / float(meta["w"])
    height = int(round(meta["h"] * s))
    photo = cv2.imread(str(data / frame["file_path"]))[:, :, ::-1]
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
    return photo, pose, meta["fl_x"] * s, meta["fl_y"] * s, meta["cx"] * s, meta["cy"] * s, height, frame["file_path"]


def describe(path: Path, mesh, data: Path) -> None:
    meta = json.loads((data / "transforms.json").read_text())
    centres = np.array([np.asarray(f["transform_matrix"])[:3, 3] for f in meta["frames"]])
    parts = mesh.split(only_watertight=False)
    print(f"{path}: {len(mesh.faces)} faces, {len(mesh.vertices)} vertices, {path.stat().st_size / 1e6:.2f} MB, "
          f"{len(parts)} connected components (largest {max(len(p.faces) for p in parts)} faces)")
    print(f"mesh extent {np.round(mesh.bounds, 2).tolist()}; camera centres {np.round(centres.min(0), 2).tolist()} "
          f".. {np.round(centres.max(0), 2).tolist()}")


def main() -> int:
    import cv2

    args = parse()
    mesh, rgb = load_mesh(args.mesh)
    describe(args.mesh, mesh, args.data)
    faces = np.asarray(mesh.faces)
    face_rgb = rgb[faces].mean(axis=1)
    rows = []
    for index in (int(i) for i in args.frames.split(",")):
        photo, pose, fx, fy, cx, cy, height, name = camera(args.data, index, args.width)
        light = np.abs(mesh.face_normals @ pose[:3, 2])  # facing the camera: bright
        grey = np.repeat((0.25 + 0.7 * light)[:, None], 3, axis=1)
        pictures = [rasterise(mesh.vertices, faces, c, pose, fx, fy, cx, cy, args.width, height)
                    for c in (face_rgb, grey)]
        rows.append(np.concatenate([photo, *pictures], axis=1))
        print(f"frame {index} ({name}): rendered")
    height = rows[0].shape[0]
    views = [overview(mesh, face_rgb, args.data, height, side) for side in (False, True)]
    pad = np.ones((height, rows[0].shape[1] - 2 * height, 3), np.float32)
    rows.append(np.concatenate([*views, pad], axis=1))
    image = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255 + 0.5).astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image[:, :, ::-1])
    print(f"photo | vertex colours | shaded: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
