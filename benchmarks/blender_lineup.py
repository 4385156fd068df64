"""A real client (issue 18): Blender imports our exported camera and mesh, renders through the imported camera,
and its silhouette is compared with ours.

Steps: train the tiny synthetic run of the tests (24 frames of 64x48, 100 CPU steps; or ``--run``), export the
objects' mesh (``export mesh`` cropped to ``tests/export/lineup.BOX``, GLB,
faces with their centre in the box) and an orbit camera (``export camera``:
``shot.glb`` and ``shot.usda``, 128x96, 3 frames), then run ``blender --background --python`` (installed with
``apt-get install -y blender`` when missing: Debian's 3.4) which

* imports ``objects.glb`` and ``shot.glb`` with Blender's glTF importer, renders frame 2 through the imported
  camera with Workbench (transparent film, no anti-aliasing) and saves the alpha;
* when Blender's build has USD: imports ``objects.usdc`` + ``shot.usda`` with its USD importer, same render.

Ours: the field's iso-surface along our renderer's rays for the same frame (``tests/export/lineup.iso_mask``) and
the mesh rasterised through the USD camera by usd-core's frustum (``lineup.mesh_mask``). Prints the IoUs.

Usage: ``python benchmarks/blender_lineup.py [--work DIR] [--run RUN] [--frame 2]`` (heavy: run it under
``flock /work/bench.lock``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "export"))
from _common import machine, work_dir  # noqa: E402

WIDTH, HEIGHT, FPS = 128, 96, 3

BLENDER_SCRIPT = textwrap.dedent('''
    import json, sys
    import bpy
    import numpy

    if not hasattr(numpy, "bool"):  # Blender 3.4's glTF importer uses np.bool, gone since numpy 1.24 (Debian 12)
        numpy.bool = bool

    args = json.loads(sys.argv[sys.argv.index("--") + 1])
    result = {"version": bpy.app.version_string, "usd": bool(getattr(bpy.app.build_options, "usd", False))}

    def reset():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.fps = args["fps"]
        scene.render.resolution_x, scene.render.resolution_y = args["width"], args["height"]
        scene.render.resolution_percentage = 100
        scene.render.engine = "BLENDER_WORKBENCH"
        scene.display.render_aa = "OFF"
        scene.render.film_transparent = True
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGBA"
        return scene

    def render(scene, camera, frame, out):
        scene.camera = camera
        scene.frame_set(frame)
        scene.render.filepath = out
        bpy.ops.render.render(write_still=True)
        return {"camera_location": list(camera.matrix_world.translation), "lens": camera.data.lens,
                "sensor": [camera.data.sensor_width, camera.data.sensor_height], "fit": camera.data.sensor_fit,
                "frame": frame}

    def keyframes(camera):
        action = camera.animation_data.action if camera.animation_data else None
        return sorted({int(round(k.co[0])) for c in action.fcurves for k in c.keyframe_points}) if action else []

    # glTF: mesh + camera
    scene = reset()
    bpy.ops.import_scene.gltf(filepath=args["mesh_glb"])
    bpy.ops.import_scene.gltf(filepath=args["camera_glb"])
    camera = next(o for o in scene.objects if o.type == "CAMERA")
    frames = keyframes(camera)
    result["gltf_keyframes"] = frames
    result["gltf"] = render(scene, camera, frames[args["index"]], args["out_gltf"])

    if result["usd"]:
        scene = reset()
        bpy.ops.wm.usd_import(filepath=args["mesh_usd"])
        bpy.ops.wm.usd_import(filepath=args["camera_usd"])
        camera = next(o for o in scene.objects if o.type == "CAMERA")
        result["usd_keyframes"] = keyframes(camera)
        result["usd_render"] = render(scene, camera, args["usd_frame"], args["out_usd"])
    with open(args["result"], "w") as f:
        json.dump(result, f)
''')


def ensure_blender() -> str:
    """The blender binary, installed with apt when missing (with python3-numpy: Debian's Blender runs the system
    Python 3, and its glTF importer needs numpy without depending on it)."""
    if not shutil.which("blender"):
        print("blender not found: apt-get install -y blender python3-numpy (Debian 3.4; large download)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "blender", "python3-numpy"], check=True)
    probe = subprocess.run(["blender", "--background", "--factory-startup", "--python-expr", "import numpy"],
                           capture_output=True, text=True, timeout=300)
    if "ModuleNotFoundError" in probe.stdout + probe.stderr:
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3-numpy"], check=True)
    return shutil.which("blender") or "blender"


def tiny_run(work: Path) -> Path:
    """Train the tests' tiny synthetic run into ``work`` (the conftest's dataset and config)."""
    from conftest import TINY_RUN_FRAMES, TINY_RUN_SIZE, tiny_run_config

    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset
    from nerfstage.nerf.trainer import train

    width, height = TINY_RUN_SIZE
    write_synthetic_dataset(work / "scene", SyntheticOptions(num_frames=TINY_RUN_FRAMES, width=width, height=height,
                                                             seed=0))
    train(work / "scene", work / "run", tiny_run_config(), progress=False)
    return work / "run"


def exports(run, work: Path) -> dict:
    import trimesh
    from lineup import BOX, faces_in_box

    from nerfstage.export.gltf import write_mesh

    from nerfstage.export.camera import export_camera, write_track
    from nerfstage.export.from_run import MeshExportOptions, export_mesh
    from nerfstage.export.scene import _mesh_z_up, write_mesh_layer
    from nerfstage.render.plan import ShotOptions

    mesh = export_mesh(run, work / "objects_grid.glb", MeshExportOptions(bbox=BOX, resolution=96, max_faces=None,
                                                                         min_component_fraction=0.0, progress=False))
    full = _mesh_z_up(work / "objects_grid.glb")  # the crop grid is a little larger than BOX: keep BOX's faces
    faces = faces_in_box(np.asarray(full.vertices), np.asarray(full.faces))
    write_mesh(trimesh.Trimesh(full.vertices, faces, process=False), work / "objects.glb", overwrite=True)
    write_mesh_layer(work / "objects.glb", work / "objects.usdc", 1.0, overwrite=True)
    shot = ShotOptions(path="orbit", width=WIDTH, height=HEIGHT, fps=FPS, seconds=1.0)
    _, track = export_camera(run, work / "shot.usda", shot)
    write_track(track, work / "shot.glb")
    return {"mesh": mesh, "shot": shot, "track": track}


def our_masks(run, made: dict, work: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    from lineup import faces_in_box, iso_mask, mesh_mask, usd_view_projection
    from pxr import Usd, UsdGeom

    from nerfstage.export.camera import run_path
    from nerfstage.export.scene import _mesh_z_up
    from nerfstage.render.plan import frame_camera, reference_distance

    path = run_path(run, made["shot"])
    focus = reference_distance(path, run.world_from_cams)
    iso = iso_mask(run, frame_camera(path, index, made["shot"], focus), path.world_from_cams[index],
                   made["mesh"].stats["threshold"], 2.0 * focus)
    mesh = _mesh_z_up(work / "objects.glb")
    vertices = np.asarray(mesh.vertices)
    stage = Usd.Stage.Open(str(work / "shot.usda"))
    camera = UsdGeom.Camera(stage.GetPrimAtPath("/World/camera"))
    projected = mesh_mask(vertices, faces_in_box(vertices, np.asarray(mesh.faces)),
                          usd_view_projection(camera, int(made["track"].frames[index])), WIDTH, HEIGHT)
    return iso, projected


def alpha_mask(png: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    return image[..., 3] >= 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None)
    parser.add_argument("--run", default=None, help="A trained run (default: train the tests' tiny run).")
    parser.add_argument("--frame", type=int, default=2, help="Path frame to compare (1-based).")
    args = parser.parse_args()
    blender = ensure_blender()
    work = work_dir(args.work, "blender-lineup")
    from lineup import iou

    from nerfstage.nerf.run import load_run

    run = load_run(Path(args.run) if args.run else tiny_run(work), device="cpu")
    made = exports(run, work)
    index = args.frame - 1
    spec = {"mesh_glb": str(work / "objects.glb"), "camera_glb": str(work / "shot.glb"),
            "mesh_usd": str(work / "objects.usdc"), "camera_usd": str(work / "shot.usda"), "fps": FPS,
            "width": WIDTH, "height": HEIGHT, "index": index, "usd_frame": int(made["track"].frames[index]),
            "out_gltf": str(work / "blender_gltf.png"), "out_usd": str(work / "blender_usd.png"),
            "result": str(work / "blender.json")}
    (work / "blender_script.py").write_text(BLENDER_SCRIPT)
    proc = subprocess.run([blender, "--background", "--factory-startup", "--python", str(work / "blender_script.py"),
                           "--", json.dumps(spec)], capture_output=True, text=True, timeout=600)
    if not (work / "blender.json").exists():
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit("blender failed")
    result = json.loads((work / "blender.json").read_text())
    iso, projected = our_masks(run, made, work, index)
    print(f"Blender {result['version']} (USD in this build: {result['usd']}); {machine()}")
    print(f"frame {args.frame} of an orbit, {WIDTH}x{HEIGHT}; ours: iso-surface along our rays covers "
          f"{iso.mean():.1%}, mesh through the USD camera (usd-core) IoU vs ours {iou(iso, projected):.4f}")
    blender_gltf = alpha_mask(work / "blender_gltf.png")
    print(f"Blender glTF import (camera keyframes {result['gltf_keyframes']}, lens {result['gltf']['lens']:.3f} mm, "
          f"sensor {result['gltf']['sensor']}): IoU vs ours {iou(iso, blender_gltf):.4f}, "
          f"vs the usd-core projection {iou(projected, blender_gltf):.4f}")
    if result["usd"]:
        blender_usd = alpha_mask(work / "blender_usd.png")
        print(f"Blender USD import (camera keyframes {result['usd_keyframes']}, lens "
              f"{result['usd_render']['lens']:.3f}, sensor {result['usd_render']['sensor']}): IoU vs ours "
              f"{iou(iso, blender_usd):.4f}, vs the usd-core projection {iou(projected, blender_usd):.4f}")


if __name__ == "__main__":
    main()
