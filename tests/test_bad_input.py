"""Issue 15: every bad input and fault ends in one clear line, and nothing the user has is lost.

One table runs every subcommand in-process (``nerfstage.app.cli.main``) over bad inputs of each class of the issue
(1 operating-system errors, 2 scratch space, 3 sizes past the memory budget, 4 zero / negative / non-finite
numbers and broken poses, 5 corrupt run folders, 6 a second writer, 7 Ctrl+C, 8 foreign files under an output's
name, plus the point-cloud extension) and asserts the contract on each row: the exit code, exactly one stderr line
that names the path or value, no traceback, and the row's folder, the trained run and the damaged runs unchanged
byte for byte (snapshots before and after). The fault tests below inject ENOSPC into the writers and Ctrl+C into
a training subprocess.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from nerfstage.app.cli import main
from nerfstage.core.lock import output_lock

Q = "--device cpu --quiet"
TRACK_HEADER = "frame,x,y,z,qw,qx,qy,qz,focal_mm,sensor_width_mm,sensor_height_mm,width,height\n"


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> sha256 of every file (and "dir" for every folder) under ``roots``."""
    seen: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            seen[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def _write_json(path: Path, content) -> None:
    path.write_text(json.dumps(content, indent=2), encoding="utf-8")


def _damage_config(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["steps"] = -1
    _write_json(run / "config.json", config)


def _damage_transform(value: float | None, shear: bool = False) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / "dataparser_transforms.json").read_text())
        if shear:
            data["transform"][0][1] += 0.3
        else:
            data["transform"][1][1] = value
        _write_json(run / "dataparser_transforms.json", data)

    return damage


def _damage_checkpoint(truncate: bool) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        import torch

        path = sorted((run / "checkpoints").glob("step-*.ckpt"))[-1]
        if truncate:
            path.write_bytes(path.read_bytes()[:1000])
            return
        data = torch.load(path, weights_only=True)
        name = next(k for k, v in data["model"].items() if v.is_floating_point() and v.numel() > 1)
        data["model"][name][0] = float("nan")
        torch.save(data, path)

    return damage


RUN_DAMAGE = {
    "good": lambda run: None,
    "config_steps": _damage_config,
    "config_json": lambda run: (run / "config.json").write_text("{not json"),
    "dp_nan": _damage_transform(None),
    "dp_shear": _damage_transform(0.0, shear=True),
    "ckpt_nan": _damage_checkpoint(truncate=False),
    "ckpt_cut": _damage_checkpoint(truncate=True),
    "no_ckpt": lambda run: shutil.rmtree(run / "checkpoints"),
}


def _pose_damage(kind: str) -> Callable[[list], None]:
    def damage(matrix: list) -> None:
        if kind == "zero":
            matrix[:] = [[0.0] * 4 for _ in range(4)]
        elif kind == "nan":
            matrix[0][3] = float("nan")
        else:  # scaled rotation: not orthonormal
            for row in matrix[:3]:
                row[:3] = [2.0 * v for v in row[:3]]

    return damage


@pytest.fixture(scope="module")
def fixtures(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The placeholders of the table: the tiny run, damaged copies of it, damaged copies of its dataset, a track."""
    root = tmp_path_factory.mktemp("bad_input")
    found = {"run": tiny_run.run_dir, "scene": tiny_run.dataset_dir}
    for name, damage in RUN_DAMAGE.items():
        run = root / f"run_{name}"
        shutil.copytree(tiny_run.run_dir, run)
        damage(run)
        found[f"run_{name}"] = run
    for kind in ("zero", "nan", "scaled"):
        scene = root / f"scene_{kind}"
        shutil.copytree(tiny_run.dataset_dir, scene)
        doc = json.loads((scene / "transforms.json").read_text())
        _pose_damage(kind)(doc["frames"][3]["transform_matrix"])
        (scene / "transforms.json").write_text(json.dumps(doc))
        found[f"scene_{kind}"] = scene
    found["track"] = root / "track.csv"
    found["track"].write_text(TRACK_HEADER + "1,0,-2,0.5,0.7071068,0.7071068,0,0,35,36,24,24,16\n")
    found["big_track"] = root / "big_track.csv"
    found["big_track"].write_text(TRACK_HEADER + "1,0,-2,0.5,0.7071068,0.7071068,0,0,35,36,24,60000,40000\n")
    found.update(_bad_interchange_files(root))
    found["sharded"] = _one_of_two_shards(tiny_run.run_dir, root / "sharded")
    found["sharded_pano"] = root / "sharded" / "p.exr"
    main_ok(f"export panorama {tiny_run.run_dir} -o {found['sharded_pano']} --width 64 --tile-size 16 --shard 1/2 {Q}")
    found["done_video"] = root / "sharded" / "x.mp4"  # every frame rendered; a user's file holds the final name
    main_ok(f"render {tiny_run.run_dir} -o {found['done_video']} --width 24 --height 16 --seconds 0.1 --shard 1/1 {Q}")
    found["done_video"].write_bytes(b"my own video")
    return found


PLY_HEADER = ("ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n")


def _bad_interchange_files(root: Path) -> dict[str, Path]:
    """Damaged splat / camera files: a PLY cut short, an SPZ that is not gzip, a USD stage without a camera, a
    .chan with text where numbers go, a GLB that is not glTF, a camera path that is not JSON."""
    contents = {
        "cut.ply": PLY_HEADER.encode() + b"\0" * 100,
        "cut.spz": b"\x1f\x8b\x08\x00 not the rest of a gzip stream",
        "empty.ply": b"",
        "not.glb": b"glTF but not really",
        "nocam.usda": b'#usda 1.0\n\ndef Xform "World"\n{\n}\n',
        "bad.chan": b"1 0 0 5 0 0 0 50\n2 0 zero 5 0 0 0\n",
        "path.json": b"{not json",
        "cam.usda": b'#usda 1.0\n\ndef Camera "Cam"\n{\n    float focalLength = 35\n}\n',
        "cut.usdc": b"PXR-USDC\x00\x08\x00\x00 cut short",
        "empty.chan": b"",
        "xyz.ply": PLY_HEADER.replace("1000", "1").encode() + b"\0" * 12,  # a point cloud, not splats
    }
    found = {}
    for name, data in contents.items():
        (root / name).write_bytes(data)
        found[name.replace(".", "_")] = root / name
    return found


def _one_of_two_shards(run: Path, folder: Path) -> Path:
    """``render --shard 1/2`` of a 3-frame PNG render (shard 2 never ran): what ``assemble`` must refuse."""
    folder.mkdir()
    output = folder / "frames"
    main_ok(f"render {run} -o {output} --format png --width 24 --height 16 --seconds 0.1 --shard 1/2 {Q}")
    return output


def main_ok(args: str) -> None:
    """Run the CLI in-process and require success (fixture set-up)."""
    try:
        main(shlex.split(args))
    except SystemExit as exit_:
        assert not exit_.code, f"{args}: exit {exit_.code}"


@dataclass
class Row:
    """One bad input: the command line (placeholders: {run}, {scene}, {out}, {file}, {track}, damaged copies), the
    exit code, text the one error line must hold, and what to set up before it runs."""

    id: str
    args: str
    code: int = 2
    says: tuple[str, ...] = ()
    holds: str | None = None
    """Output whose lock the test holds while the command runs (class 6)."""
    part: str | None = None
    """The part of ``holds`` that is locked (a shard's ``ShardSpec.lock_part``); None = the whole output."""
    patch: Callable | None = None
    """``patch(monkeypatch)`` before the command runs (faults: ENOSPC, Ctrl+C)."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Files the user already has in the row's folder (relative path -> bytes)."""


def _raise(exc: BaseException) -> Callable:
    def fail(*args, **kwargs):
        raise exc

    return fail


def _enospc(name: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


def _no_scratch_space(monkeypatch) -> None:
    monkeypatch.setattr(os, "posix_fallocate", _raise(_enospc("scratch")))


def _ctrl_c(target: str) -> Callable:
    def patch(monkeypatch) -> None:
        monkeypatch.setattr(target, _raise(KeyboardInterrupt()))

    return patch


R, P, M, C, PL = "render {run}", "export panorama {run}", "export mesh {run}", "export pointcloud {run}", \
    "export plates {run} --track {track}"
ROWS = [
    # 1: operating-system errors (a file where a folder is expected, unwritable places)
    Row("os-render-below-file", f"{R} -o {{file}}/x.mp4 {Q}", says=("{file}",)),
    Row("os-render-frames-below-file", f"{R} -o {{file}}/frames --format png {Q}", says=("{file}",)),
    Row("os-render-proc", f"{R} -o /proc/nerfstage_no/x.mp4 {Q}", says=("/proc/nerfstage_no",)),
    Row("os-render-savepath-below-file", f"{R} --save-path {{file}}/p.json {Q}", says=("{file}",)),
    Row("os-mesh-below-file", f"{M} -o {{file}}/m.glb --resolution 16 {Q}", says=("{file}",)),
    Row("os-pointcloud-below-file", f"{C} -o {{file}}/p.ply {Q}", says=("{file}",)),
    Row("os-panorama-below-file", f"{P} -o {{file}}/p.exr --width 64 {Q}", says=("{file}",)),
    Row("os-plates-folder-is-file", f"{PL} -o {{file}} {Q}", says=("{file}",)),
    Row("os-eval-images-is-file", f"eval {{run}} --save-images {{file}} {Q}", says=("{file}",)),
    Row("os-train-out-is-file", f"train {{scene}} -o {{file}} --steps 5 {Q}", says=("{file}",)),
    Row("os-train-below-file", f"train {{scene}} -o {{file}}/run --steps 5 {Q}", says=("{file}",)),
    Row("os-capture-below-file", "capture {scene}/images -o {file}/ds --quiet", says=("{file}",)),
    Row("os-demo-below-file", f"demo -o {{file}}/demo {Q}", says=("{file}",)),
    Row("os-run-below-file", f"run {{scene}}/images -o {{file}}/work {Q}", says=("{file}",)),
    Row("os-render-missing-run", f"render {{out}}/nothing -o {{out}}/x.mp4 {Q}", says=("{out}/nothing",)),
    Row("os-eval-missing-run", f"eval {{out}}/nothing {Q}", says=("{out}/nothing",)),
    Row("os-view-missing-run", "view {out}/nothing --device cpu", says=("{out}/nothing",)),
    Row("os-plates-missing-track", f"export plates {{run}} --track {{out}}/t.csv -o {{out}}/p {Q}",
        says=("{out}/t.csv",)),
    Row("os-capture-missing-input", "capture {out}/nothing -o {out}/ds --quiet", says=("{out}/nothing",)),
    # 2: a full disk under the panorama's scratch image is one line up front (no SIGBUS, no scratch left)
    Row("scratch-panorama-enospc", f"{P} -o {{out}}/p.exr --width 256 --tile-size 64 {Q}",
        says=("No space left",), patch=_no_scratch_space),
    Row("scratch-panorama-png-enospc", f"{P} -o {{out}}/p.png --width 256 --tile-size 64 {Q}",
        says=("No space left",), patch=_no_scratch_space),
    # 3: sizes that cannot fit memory are refused before any work, with the memory-budget option named
    Row("size-render-frame", f"{R} -o {{out}}/x.mp4 --width 100000 --height 100000 {Q}",
        says=("100000x100000", "--memory-gb")),
    Row("size-render-budget", f"{R} -o {{out}}/f --format exr --width 640 --height 480 --memory-gb 0.0001 {Q}",
        says=("--memory-gb",)),
    Row("size-panorama", f"{P} -o {{out}}/p.exr --width 65536 --tile-size 0 {Q}", says=("--memory-gb",)),
    Row("size-plates", f"export plates {{run}} --track {{big_track}} -o {{out}}/p {Q}", says=("--memory-gb",)),
    Row("size-plates-budget", f"{PL} -o {{out}}/p --memory-gb 0.000001 {Q}", says=("--memory-gb",)),
    # 4: zero, negative and non-finite numbers are refused, naming the flag and the value
    Row("num-render-width", f"{R} -o {{out}}/x.mp4 --width 0 {Q}", says=("--width 0",)),
    Row("num-render-height", f"{R} -o {{out}}/x.mp4 --height -4 {Q}", says=("--height -4",)),
    Row("num-render-fps", f"{R} -o {{out}}/x.mp4 --fps 0 {Q}", says=("--fps 0",)),
    Row("num-render-seconds", f"{R} -o {{out}}/x.mp4 --seconds -1 {Q}", says=("--seconds -1",)),
    Row("num-render-fov-nan", f"{R} -o {{out}}/x.mp4 --fov nan {Q}", says=("--fov nan",)),
    Row("num-render-radius", f"{R} -o {{out}}/x.mp4 --radius 0 {Q}", says=("--radius 0",)),
    Row("num-render-aperture", f"{R} -o {{out}}/x.mp4 --aperture -0.1 {Q}", says=("--aperture -0.1",)),
    Row("num-render-lens", f"{R} -o {{out}}/x.mp4 --lens-samples 0 {Q}", says=("--lens-samples 0",)),
    Row("num-render-chunk", f"{R} -o {{out}}/x.mp4 --max-rays-per-chunk 0 {Q}", says=("--max-rays-per-chunk 0",)),
    Row("num-render-memory", f"{R} -o {{out}}/x.mp4 --memory-gb 0 {Q}", says=("--memory-gb 0",)),
    Row("num-render-turns-inf", f"{R} -o {{out}}/x.mp4 --turns inf {Q}", says=("--turns inf",)),
    Row("num-train-steps", f"train {{scene}} -o {{out}}/run --steps -5 {Q}", says=("--steps -5",)),
    Row("num-train-steps-zero", f"train {{scene}} -o {{out}}/run --steps 0 {Q}", says=("--steps 0",)),
    Row("num-train-budget", f"train {{scene}} -o {{out}}/run --time-budget 0 {Q}", says=("--time-budget 0",)),
    Row("num-train-eval-every", f"train {{scene}} -o {{out}}/run --eval-every -1 {Q}", says=("--eval-every -1",)),
    Row("num-train-seed", f"train {{scene}} -o {{out}}/run --seed -1 {Q}", says=("--seed -1",)),
    Row("num-capture-frames", "capture {scene}/images -o {out}/ds --frames 0 --quiet", says=("--frames 0",)),
    Row("num-capture-size", "capture {scene}/images -o {out}/ds --max-size -1 --quiet", says=("--max-size -1",)),
    Row("num-capture-budget", "capture {scene}/images -o {out}/ds --match-budget 0 --quiet",
        says=("--match-budget 0",)),
    Row("num-capture-loops", "capture {scene}/images -o {out}/ds --loop-every -2 --quiet", says=("--loop-every -2",)),
    Row("num-run-frames", f"run {{scene}}/images -o {{out}}/work --frames 0 {Q}", says=("--frames 0",)),
    Row("num-demo-frames", f"demo -o {{out}}/demo --frames -3 {Q}", says=("--frames -3",)),
    Row("num-demo-seed", f"demo -o {{out}}/demo --seed -1 {Q}", says=("--seed -1",)),
    Row("num-demo-nproc", f"demo -o {{out}}/demo --nproc 0 {Q}", says=("--nproc 0",)),
    Row("num-run-nproc", f"run {{scene}}/images -o {{out}}/work --nproc 2000 {Q}", says=("--nproc 2000",)),
    Row("num-mesh-resolution", f"{M} -o {{out}}/m.glb --resolution 0 {Q}", says=("--resolution 0",)),
    Row("num-mesh-faces", f"{M} -o {{out}}/m.glb --max-faces -1 {Q}", says=("--max-faces -1",)),
    Row("num-mesh-texture", f"{M} -o {{out}}/m.glb --texture --texture-size 0 {Q}", says=("--texture-size 0",)),
    Row("num-mesh-threshold", f"{M} -o {{out}}/m.glb --threshold nan {Q}", says=("--threshold nan",)),
    Row("num-cloud-points", f"{C} -o {{out}}/p.ply --num-points 0 {Q}", says=("--num-points 0",)),
    Row("num-cloud-downscale", f"{C} -o {{out}}/p.ply --downscale 0 {Q}", says=("--downscale 0",)),
    Row("num-cloud-stride", f"{C} -o {{out}}/p.ply --view-stride -1 {Q}", says=("--view-stride -1",)),
    Row("num-cloud-std", f"{C} -o {{out}}/p.ply --std-ratio 0 {Q}", says=("--std-ratio 0",)),
    Row("num-cloud-neighbors", f"{C} -o {{out}}/p.ply --neighbors -1 {Q}", says=("--neighbors -1",)),
    Row("num-panorama-width", f"{P} -o {{out}}/p.exr --width 0 {Q}", says=("--width 0",)),
    Row("num-panorama-height", f"{P} -o {{out}}/p.exr --height 0 {Q}", says=("--height 0",)),
    Row("num-panorama-face", f"{P} -o {{out}}/p.exr --layout cubemap --face-size 0 {Q}", says=("--face-size 0",)),
    Row("num-panorama-tile", f"{P} -o {{out}}/p.exr --tile-size -1 {Q}", says=("--tile-size -1",)),
    Row("num-panorama-yaw", f"{P} -o {{out}}/p.exr --yaw inf {Q}", says=("--yaw inf",)),
    Row("num-panorama-camera", f"{P} -o {{out}}/p.exr --camera-index -1 {Q}", says=("--camera-index -1",)),
    Row("num-plates-overscan", f"{PL} -o {{out}}/p --overscan -5 {Q}", says=("--overscan -5",)),
    Row("num-plates-memory", f"{PL} -o {{out}}/p --memory-gb -1 {Q}", says=("--memory-gb -1",)),
    Row("num-view-port", "view {run} --port -1 --device cpu", says=("--port -1",)),
    Row("num-view-height", "view {run} --max-height 0 --device cpu", says=("--max-height 0",)),
    Row("pose-zero", f"train {{scene_zero}} -o {{out}}/run --steps 5 {Q}", says=("transforms.json", "frame 3")),
    Row("pose-nan", f"train {{scene_nan}} -o {{out}}/run --steps 5 {Q}", says=("transforms.json", "frame 3")),
    Row("pose-scaled", f"train {{scene_scaled}} -o {{out}}/run --steps 5 {Q}", says=("transforms.json", "frame 3")),
    Row("os-capture-missing-colmap", "capture --colmap {out}/nothing --images {scene}/images -o {out}/ds --quiet",
        says=("{out}/nothing",)),
    # 5: damaged run folders are refused naming the damaged file
    Row("run-config-steps-render", f"{R} -o {{out}}/x.mp4 --width 32 --height 24 --seconds 0.1 {Q}"
        .replace("{run}", "{run_config_steps}"), says=("config.json", "steps")),
    Row("run-config-steps-resume", f"train -o {{run_config_steps}} --resume {Q}", says=("config.json", "steps")),
    Row("run-config-json-eval", f"eval {{run_config_json}} {Q}", says=("config.json",)),
    Row("run-dp-nan-render", f"render {{run_dp_nan}} -o {{out}}/x.mp4 {Q}", says=("dataparser_transforms.json",)),
    Row("run-dp-nan-resume", f"train -o {{run_dp_nan}} --resume --steps 200 {Q}",
        says=("dataparser_transforms.json",)),
    Row("run-dp-shear-mesh", f"export mesh {{run_dp_shear}} -o {{out}}/m.glb {Q}", says=("dataparser_transforms.json",)),
    Row("run-ckpt-nan-panorama", f"export panorama {{run_ckpt_nan}} -o {{out}}/p.exr {Q}", says=("step-", "NaN")),
    Row("run-ckpt-nan-view", "view {run_ckpt_nan} --device cpu", says=("step-", "NaN")),
    Row("run-ckpt-cut-plates", f"export plates {{run_ckpt_cut}} --track {{track}} -o {{out}}/p {Q}",
        says=("step-",)),
    Row("run-ckpt-cut-eval", f"eval {{run_ckpt_cut}} {Q}", says=("step-",)),
    Row("run-ckpt-nan-resume", f"train -o {{run_ckpt_nan}} --resume --steps 200 {Q}", says=("step-", "NaN")),
    Row("run-ckpt-cut-resume", f"train -o {{run_ckpt_cut}} --resume --steps 200 {Q}", says=("step-",)),
    Row("run-no-ckpt-pointcloud", f"export pointcloud {{run_no_ckpt}} -o {{out}}/p.ply {Q}", says=("checkpoints",)),
    # 6: a second writer is refused, naming the holder's PID
    Row("lock-train-resume", f"train -o {{run_good}} --resume --steps 200 {Q}", says=("{pid}",), holds="{run_good}"),
    Row("lock-train", f"train {{scene}} -o {{out}}/run --steps 5 {Q}", says=("{pid}",), holds="{out}/run"),
    Row("lock-render", f"{R} -o {{out}}/frames --format png --width 32 --height 24 --seconds 0.1 {Q}",
        says=("{pid}",), holds="{out}/frames"),
    Row("lock-panorama", f"{P} -o {{out}}/p.exr --width 64 {Q}", says=("{pid}",), holds="{out}/p.exr"),
    Row("lock-plates", f"{PL} -o {{out}}/p {Q}", says=("{pid}",), holds="{out}/p"),
    Row("lock-mesh", f"{M} -o {{out}}/m.glb --resolution 16 {Q}", says=("{pid}",), holds="{out}/m.glb"),
    Row("lock-pointcloud", f"{C} -o {{out}}/p.ply {Q}", says=("{pid}",), holds="{out}/p.ply"),
    Row("lock-capture", "capture {scene}/images -o {out}/ds --quiet", says=("{pid}",), holds="{out}/ds"),
    Row("lock-run", f"run {{scene}}/images -o {{out}}/work {Q}", says=("{pid}",), holds="{out}/work"),
    Row("lock-demo", f"demo -o {{out}}/demo {Q}", says=("{pid}",), holds="{out}/demo"),
    # 7: Ctrl+C outside training: one line, exit 130, nothing partial left
    Row("ctrl-c-render", f"{R} -o {{out}}/x.mp4 {Q}", code=130, says=("interrupted",),
        patch=_ctrl_c("nerfstage.render.pipeline.render_path")),
    Row("ctrl-c-eval", f"eval {{run}} {Q}", code=130, says=("interrupted",),
        patch=_ctrl_c("nerfstage.nerf.evaluate.evaluate_run")),
    Row("ctrl-c-panorama", f"{P} -o {{out}}/p.exr {Q}", code=130, says=("interrupted",),
        patch=_ctrl_c("nerfstage.export.panorama.export_panorama")),
    # 8: a user's file under a plate's name is kept; other existing outputs need --overwrite
    Row("foreign-plate", f"{PL} -o {{out}}/p {Q}", says=("plate_00001.exr",),
        files={"out/p/plate_00001.exr": b"my own EXR, not a plate"}),
    Row("foreign-plate-png", f"{PL} -o {{out}}/p --format png {Q}", says=("plate_00001.png",),
        files={"out/p/plate_00001.png": b"my own PNG"}),
    Row("exists-mesh", f"{M} -o {{out}}/m.glb {Q}", says=("{out}/m.glb",), files={"out/m.glb": b"mine"}),
    Row("exists-panorama", f"{P} -o {{out}}/p.exr {Q}", says=("{out}/p.exr",), files={"out/p.exr": b"mine"}),
    Row("exists-render", f"{R} -o {{out}}/x.mp4 {Q}", says=("{out}/x.mp4",), files={"out/x.mp4": b"mine"}),
    Row("exists-train", f"train {{scene}} -o {{out}}/run --steps 5 {Q}", says=("{out}/run",),
        files={"out/run/notes.txt": b"mine"}),
    # also: point clouds are .ply
    Row("cloud-xyz", f"{C} -o {{out}}/x.xyz {Q}", says=("x.xyz", ".ply")),
]

S, CAM, SC = "export splats {run}", "export camera {run}", "export scene {run}"
SPLAT_ROWS = [
    # export splats: extension, numbers, existing output, a file where a folder is, a second writer
    Row("ext-splats", f"{S} -o {{out}}/s.obj --steps 0 {Q}", says=("s.obj", ".ply")),
    Row("ext-splats-none", f"{S} -o {{out}}/scene --steps 0 {Q}", says=("{out}/scene",)),
    Row("num-splats-max", f"{S} -o {{out}}/s.ply --max-splats 0 {Q}", says=("--max-splats 0",)),
    Row("num-splats-max-neg", f"{S} -o {{out}}/s.ply --max-splats -5 {Q}", says=("--max-splats -5",)),
    Row("num-splats-steps", f"{S} -o {{out}}/s.ply --steps -1 {Q}", says=("--steps -1",)),
    Row("exists-splats", f"{S} -o {{out}}/s.ply --steps 0 {Q}", says=("{out}/s.ply",), files={"out/s.ply": b"mine"}),
    Row("exists-splats-spz", f"{S} -o {{out}}/s.spz --steps 0 {Q}", says=("{out}/s.spz",),
        files={"out/s.spz": b"mine"}),
    Row("os-splats-below-file", f"{S} -o {{file}}/s.ply --steps 0 {Q}", says=("{file}",)),
    Row("lock-splats", f"{S} -o {{out}}/s.glb --steps 0 {Q}", says=("{pid}",), holds="{out}/s.glb"),
    # render / view with splats: missing, cut short, not splats, unknown extension
    Row("splat-render-missing", f"{R} --splats {{out}}/none.ply -o {{out}}/x.mp4 {Q}", says=("{out}/none.ply",)),
    Row("splat-render-cut-ply", f"{R} --splats {{cut_ply}} -o {{out}}/x.mp4 {Q}", says=("{cut_ply}",)),
    Row("splat-render-empty-ply", f"{R} --splats {{empty_ply}} -o {{out}}/x.mp4 {Q}", says=("{empty_ply}",)),
    Row("splat-render-cut-spz", f"{R} --splats {{cut_spz}} -o {{out}}/x.mp4 {Q}", says=("{cut_spz}",)),
    Row("splat-render-not-glb", f"{R} --splats {{not_glb}} -o {{out}}/x.mp4 {Q}", says=("{not_glb}",)),
    Row("splat-render-ext", f"{R} --splats {{track}} -o {{out}}/x.mp4 {Q}", says=("{track}",)),
    Row("splat-view-cut-ply", "view {run} --splats {cut_ply} --device cpu", says=("{cut_ply}",)),
    Row("splat-view-not-3dgs", "view {run} --splats {xyz_ply} --device cpu", says=("{xyz_ply}", "f_dc_0")),
    Row("splat-view-missing", "view {run} --splats {out}/none.spz --device cpu", says=("{out}/none.spz",)),
    Row("splat-run-format", f"run {{scene}}/images -o {{out}}/work --splat-format xyz {Q}", says=("xyz",)),
]

CAMERA_ROWS = [
    # export camera: extension, path file, numbers, existing output, a file where a folder is
    Row("ext-camera", f"{CAM} -o {{out}}/shot.fbx", says=("shot.fbx", ".usda")),
    Row("cam-path-missing", f"{CAM} -o {{out}}/shot.usda --path {{out}}/p.json", says=("{out}/p.json",)),
    Row("cam-path-not-json", f"{CAM} -o {{out}}/shot.usda --path {{path_json}}", says=("{path_json}",)),
    Row("cam-path-name", f"{CAM} -o {{out}}/shot.usda --path zigzag", says=("zigzag",)),
    Row("num-camera-fps", f"{CAM} -o {{out}}/shot.chan --fps 0", says=("--fps 0",)),
    Row("num-camera-seconds", f"{CAM} -o {{out}}/shot.chan --seconds nan", says=("--seconds nan",)),
    Row("num-camera-width", f"{CAM} -o {{out}}/shot.json --width -2", says=("--width -2",)),
    Row("num-camera-mpu", f"{CAM} -o {{out}}/shot.usda --meters-per-unit 0", says=("--meters-per-unit 0",)),
    Row("num-camera-sensor", f"{CAM} -o {{out}}/shot.usda --sensor-width-mm inf", says=("--sensor-width-mm inf",)),
    Row("exists-camera", f"{CAM} -o {{out}}/shot.usda", says=("{out}/shot.usda",), files={"out/shot.usda": b"mine"}),
    Row("os-camera-below-file", f"{CAM} -o {{file}}/shot.glb", says=("{file}",)),
    Row("lock-camera", f"{CAM} -o {{out}}/shot.usdc", says=("{pid}",), holds="{out}/shot.usdc"),
    # export plates with .usd / .chan tracks
    Row("track-usd-no-camera", f"export plates {{run}} --track {{nocam_usda}} --size 24,16 -o {{out}}/p {Q}",
        says=("{nocam_usda}",)),
    Row("track-usd-prim", f"export plates {{run}} --track {{nocam_usda}} --camera-prim /World/Cam --size 24,16 "
        f"-o {{out}}/p {Q}", says=("/World/Cam",)),
    Row("track-chan-bad", f"export plates {{run}} --track {{bad_chan}} --size 24,16 -o {{out}}/p {Q}",
        says=("{bad_chan}",)),
    Row("track-size-zero", f"export plates {{run}} --track {{bad_chan}} --size 0,16 -o {{out}}/p {Q}",
        says=("--size",)),
    Row("track-size-text", f"export plates {{run}} --track {{bad_chan}} --size a,b -o {{out}}/p {Q}",
        says=("--size",)),
    Row("track-ext", f"export plates {{run}} --track {{cut_ply}} -o {{out}}/p {Q}", says=("{cut_ply}",)),
    Row("track-usd-no-size", f"export plates {{run}} --track {{cam_usda}} -o {{out}}/p {Q}",
        says=("{cam_usda}", "--size")),
    Row("track-usdc-cut", f"export plates {{run}} --track {{cut_usdc}} --size 24,16 -o {{out}}/p {Q}",
        says=("{cut_usdc}",)),
    Row("track-chan-empty", f"export plates {{run}} --track {{empty_chan}} --size 24,16 -o {{out}}/p {Q}",
        says=("{empty_chan}",)),
]

SCENE_ROWS = [
    # export scene: missing / damaged inputs, existing folder, a file where the folder goes
    Row("scene-mesh-missing", f"{SC} -o {{out}}/set --mesh {{out}}/m.glb {Q}", says=("{out}/m.glb",)),
    Row("scene-mesh-not-glb", f"{SC} -o {{out}}/set --mesh {{not_glb}} {Q}", says=("{not_glb}",)),
    Row("scene-splats-cut", f"{SC} -o {{out}}/set --splats {{cut_ply}} {Q}",
        says=("{cut_ply}",)),
    Row("scene-plate-missing", f"{SC} -o {{out}}/set --plate {{out}}/sky.exr {Q}", says=("{out}/sky.exr",)),
    Row("scene-plate-not-exr", f"{SC} -o {{out}}/set --plate {{track}} {Q}", says=("{track}",)),
    Row("num-scene-mesh-res", f"{SC} -o {{out}}/set --mesh-resolution 0 {Q}", says=("--mesh-resolution 0",)),
    Row("num-scene-plate-width", f"{SC} -o {{out}}/set --plate-width -1 {Q}", says=("--plate-width -1",)),
    Row("num-scene-mpu", f"{SC} -o {{out}}/set --meters-per-unit nan {Q}", says=("--meters-per-unit nan",)),
    Row("exists-scene", f"{SC} -o {{out}}/set {Q}", says=("{out}/set",), files={"out/set/scene.usda": b"mine"}),
    Row("os-scene-is-file", f"{SC} -o {{file}} {Q}", says=("{file}",)),
    Row("lock-scene", f"{SC} -o {{out}}/set {Q}", says=("{pid}",), holds="{out}/set"),
]

F = f"-o {{out}}/f --format png --width 24 --height 16 --seconds 0.1 {Q}"
SHARD_ROWS = [
    # --frames / --shard text, frames past the job, a second process on one shard, assemble with a shard missing
    Row("shard-frames-zero", f"{R} {F} --frames 0-3", says=("0-3",)),
    Row("shard-frames-reversed", f"{R} {F} --frames 5-2", says=("5-2",)),
    Row("shard-frames-text", f"{R} {F} --frames a-b", says=("a-b",)),
    Row("shard-frames-past", f"{R} {F} --frames 2-9", says=("2-9", "3 items")),
    Row("shard-frames-past-bar", f"{R} -o {{out}}/f --format png --width 24 --height 16 --seconds 0.1 --device cpu "
        "--frames 2-9", says=("2-9", "3 items")),  # no --quiet: refused before the progress bar opens
    Row("shard-k-over-n", f"{R} {F} --shard 3/2", says=("3/2",)),
    Row("shard-k-zero", f"{R} {F} --shard 0/4", says=("0/4",)),
    Row("shard-text", f"{R} {F} --shard a/b", says=("a/b",)),
    Row("shard-panorama", f"{P} -o {{out}}/p.exr --width 64 --shard 2/0 {Q}", says=("2/0",)),
    Row("shard-panorama-frames", f"{P} -o {{out}}/p.exr --width 64 --tile-size 32 --frames 1-999 {Q}",
        says=("1-999",)),
    Row("shard-plates", f"{PL} -o {{out}}/p --shard 1/-2 {Q}", says=("1/-2",)),
    Row("shard-plates-frames", f"{PL} -o {{out}}/p --frames 2-2 {Q}", says=("2-2",)),
    Row("lock-shard", f"{R} {F} --shard 1/2", says=("{pid}",), holds="{out}/f", part="all.s1of2.r0of1"),
    Row("asm-missing-shard", "assemble {sharded}", says=("shard 2/2",)),
    Row("asm-nothing", "assemble {out}/nothing.mp4", says=("{out}/nothing.mp4",)),
    Row("asm-panorama-missing-tile", "assemble {sharded_pano}", says=("shard 2/2",)),
    Row("asm-exists", "assemble {done_video}", says=("{done_video}", "--overwrite")),
    Row("asm-below-file", "assemble {file}/x.mp4", says=("{file}",)),
]

ROWS += SPLAT_ROWS + CAMERA_ROWS + SCENE_ROWS + SHARD_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(row: Row, fixtures, tmp_path, capsys, monkeypatch):
    names = {**{k: str(v) for k, v in fixtures.items()}, "out": str(tmp_path / "out"),
             "file": str(tmp_path / "a_file"), "pid": str(os.getpid())}
    (tmp_path / "a_file").write_bytes(b"a user's file")
    for rel, content in row.files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    if row.patch is not None:
        row.patch(monkeypatch)
    watched = (tmp_path, fixtures["run"], *(p for k, p in fixtures.items() if k.startswith("run_")))
    capsys.readouterr()
    with output_lock(Path(row.holds.format(**names)), row.part) if row.holds else _nothing():
        before = snapshot(*watched)
        with pytest.raises(SystemExit) as exit_, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")  # a Python warning is more lines on the user's terminal
            main(shlex.split(row.args.format(**names)))
        after = snapshot(*watched)
    out, err = capsys.readouterr()
    err = err + "".join(f"{w.filename}: {w.category.__name__}: {w.message}\n" for w in warned)
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == row.code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not out.strip(), out  # refused before anything starts (a viewer's banner, a summary)
    for text in row.says:
        assert text.format(**names) in lines[0], lines[0]
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_the_table_covers_every_class_and_subcommand():
    """>= 60 rows; each class of issue 15 has rows; every subcommand appears."""
    assert len(ROWS) >= 60
    prefixes = {row.id.split("-")[0] for row in ROWS}
    assert {"os", "scratch", "size", "num", "pose", "run", "lock", "ctrl", "foreign", "cloud"} <= prefixes
    commands = {" ".join(row.args.split()[:2]) if row.args.startswith("export") else row.args.split()[0]
                for row in ROWS}
    assert commands >= {"capture", "train", "eval", "run", "demo", "render", "view", "export mesh",
                        "export pointcloud", "export panorama", "export plates", "export splats", "export camera",
                        "export scene", "assemble"}
    assert len(SPLAT_ROWS + CAMERA_ROWS + SCENE_ROWS + SHARD_ROWS) >= 30


# ------------------------------------------------------------------------------------------ fault injection


def _no_partial_files(root: Path) -> list[str]:
    """Temp / partial names left under ``root`` (none may remain after a failed write)."""
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name or ".partial" in p.name or "scratch" in p.name]


def _run_cli(capsys, *args) -> tuple[int, list[str]]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return exit_.value.code, [line for line in err.splitlines() if line.strip()]


def test_enospc_during_a_checkpoint_write_keeps_nothing_half_written(tiny_run, tmp_path, capsys, monkeypatch):
    """torch.save fails with ENOSPC midway (some bytes written): one line naming the checkpoint, no .ckpt file and
    no temp file left; the run folder stays resumable."""
    import torch

    real_save = torch.save

    def half_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise _enospc(getattr(handle, "name", "checkpoint"))

    monkeypatch.setattr(torch, "save", half_save)
    code, lines = _run_cli(capsys, "train", tiny_run.dataset_dir, "-o", tmp_path / "run", "--steps", "2",
                           "--preset", "preview", "--device", "cpu", "--quiet")
    monkeypatch.setattr(torch, "save", real_save)
    assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0] and "step-000000002.ckpt" in lines[0]
    assert not list((tmp_path / "run" / "checkpoints").glob("*")) and not _no_partial_files(tmp_path)


def test_enospc_during_image_writes(tiny_run, tmp_path, capsys, monkeypatch):
    """A frame (PNG), an MP4, a panorama EXR and a mesh GLB whose write fails with ENOSPC: one line each, no file
    under the final name, no temp file."""
    import cv2

    monkeypatch.setattr(cv2, "imwrite", _raise(_enospc("frame")))
    code, lines = _run_cli(capsys, "render", tiny_run.run_dir, "-o", tmp_path / "frames", "--format", "png",
                           "--width", "32", "--height", "24", "--seconds", "0.1", "--device", "cpu", "--quiet")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0], lines
    assert not list((tmp_path / "frames").glob("frame_*")) if (tmp_path / "frames").exists() else True
    monkeypatch.undo()

    from nerfstage.render.writers import VideoWriter

    class FullDisk:  # the MP4 container, whose packets no longer fit on the disk
        def __init__(self, container):
            self._container = container

        def __getattr__(self, name):
            return getattr(self._container, name)

        def mux(self, packets):
            raise _enospc(str(tmp_path / "x.mp4"))

    real_open = VideoWriter._open

    def open_on_a_full_disk(self, *args):
        real_open(self, *args)
        self._container = FullDisk(self._container)

    monkeypatch.setattr(VideoWriter, "_open", open_on_a_full_disk)
    code, lines = _run_cli(capsys, "render", tiny_run.run_dir, "-o", tmp_path / "x.mp4", "--width", "32",
                           "--height", "24", "--seconds", "0.1", "--device", "cpu", "--quiet")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0], lines
    assert not (tmp_path / "x.mp4").exists()
    monkeypatch.undo()

    from nerfstage.export import panorama_io

    written = []

    def fourth_file_fills_the_disk(tmp, *args):  # latlong: the one file; cubemap: the 4th of six faces
        Path(tmp).write_bytes(b"part of an EXR")
        written.append(tmp)
        if len(written) in (1, 5):
            raise _enospc(str(tmp))

    monkeypatch.setattr(panorama_io, "_write_exr_file", fourth_file_fills_the_disk)
    code, lines = _run_cli(capsys, "export", "panorama", tiny_run.run_dir, "-o", tmp_path / "p.exr", "--width", "64",
                           "--device", "cpu", "--quiet")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0] and "p.exr" in lines[0], lines
    code, lines = _run_cli(capsys, "export", "panorama", tiny_run.run_dir, "-o", tmp_path / "cube.exr", "--layout",
                           "cubemap", "--cubemap-layout", "six", "--width", "64", "--device", "cpu", "--quiet")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0] and "cube" in lines[0], lines
    assert len(written) == 5 and not list(tmp_path.glob("p*.exr")) and not list(tmp_path.glob("cube*.exr"))
    monkeypatch.undo()

    import trimesh

    monkeypatch.setattr(trimesh.Trimesh, "export", _raise(_enospc("m.glb")))
    code, lines = _run_cli(capsys, "export", "mesh", tiny_run.run_dir, "-o", tmp_path / "m.glb", "--resolution", "24",
                           "--device", "cpu", "--quiet")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0], lines
    assert not (tmp_path / "m.glb").exists() and not _no_partial_files(tmp_path)


def test_a_second_process_is_refused_naming_its_pid(tiny_run, tmp_path, capsys):
    """Another process holds the run folder (a training in progress): ``train --resume`` there is refused at once,
    naming that process's PID, and the run is untouched."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    code = ("import sys, time\nfrom nerfstage.core.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run)
        status, lines = _run_cli(capsys, "train", "-o", run, "--resume", "--steps", "200", "--device", "cpu",
                                 "--quiet")
        assert status == 2 and len(lines) == 1 and f"PID {holder.pid}" in lines[0] and str(run) in lines[0], lines
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_on_one_shard_is_refused_and_other_shards_run(tiny_run, tmp_path, capsys):
    """Another process renders shard 1/2 of a frame render: a second ``--shard 1/2`` is refused naming its PID and
    writes nothing; ``--shard 2/2`` of the same output runs beside it and writes only its own frame."""
    out = tmp_path / "f"
    code = ("import sys, time\nfrom nerfstage.core.lock import output_lock\n"
            "with output_lock(sys.argv[1], 'all.s1of2.r0of1'):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    args = ["render", tiny_run.run_dir, "-o", out, "--format", "png", "--width", "24", "--height", "16", "--seconds",
            "0.1", "--device", "cpu", "--quiet"]
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(tmp_path)
        status, lines = _run_cli(capsys, *args, "--shard", "1/2")
        assert status == 2 and len(lines) == 1 and f"PID {holder.pid}" in lines[0], lines
        assert snapshot(tmp_path) == before
        status, lines = _run_cli(capsys, *args, "--shard", "2/2")
        assert status == 0, lines
        assert sorted(p.name for p in out.glob("frame_*.png")) == ["frame_00002.png"]
    finally:
        holder.kill()
        holder.wait()


TRAIN_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_run_config
import nerfstage.nerf.config as config
import nerfstage.nerf.trainer as trainer
config.build_config = lambda preset, **overrides: tiny_run_config({steps})
stop_at = {stop_at}
step = trainer.Trainer.step

def step_then_maybe_ctrl_c(self):
    info = step(self)
    if self.state.step == stop_at:
        os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl+C: the step in flight finishes first
    return info

trainer.Trainer.step = step_then_maybe_ctrl_c
from nerfstage.app.cli import main
main(sys.argv[1:])
"""


def _train_process(tmp_path: Path, args: list[str], steps: int, stop_at: int) -> subprocess.CompletedProcess:
    script = tmp_path / f"train_{stop_at}.py"
    script.write_text(TRAIN_SCRIPT.format(tests=str(Path(__file__).parent), steps=steps, stop_at=stop_at))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def _weights(run: Path) -> dict:
    import torch

    path = sorted((run / "checkpoints").glob("step-*.ckpt"))[-1]
    return torch.load(path, weights_only=True)["model"]


def test_ctrl_c_in_training_checkpoints_that_step_and_resume_ends_bit_identical(tiny_run, tmp_path):
    """SIGINT at step 13 of 30: exit 130, one line naming the checkpoint of step 13 and the exact resume command;
    the resume (that command) ends with weights bit-identical to an uninterrupted 30-step run, same metrics."""
    steps, common = 30, ["--device", "cpu", "--quiet"]
    stopped = _train_process(tmp_path, ["train", str(tiny_run.dataset_dir), "-o", str(tmp_path / "a"), *common],
                             steps, stop_at=13)
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert stopped.returncode == 130 and len(lines) == 1, stopped.stderr
    resume = f"nerfstage train --resume -o {tmp_path / 'a'}"
    assert "step 13/30" in lines[0] and "step-000000013.ckpt" in lines[0] and lines[0].endswith(resume), lines[0]
    assert (tmp_path / "a" / "checkpoints" / "step-000000013.ckpt").is_file()
    assert not (tmp_path / "a" / "metrics.json").exists()
    resumed = _train_process(tmp_path, shlex.split(resume)[1:] + common, steps, stop_at=-1)
    assert resumed.returncode == 0, resumed.stderr
    whole = _train_process(tmp_path, ["train", str(tiny_run.dataset_dir), "-o", str(tmp_path / "b"), *common],
                           steps, stop_at=-1)
    assert whole.returncode == 0, whole.stderr
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert (ma["steps"], ma["psnr"], ma["ssim"]) == (mb["steps"], mb["psnr"], mb["ssim"]) == (steps, *(mb["psnr"],
                                                                                                   mb["ssim"]))


def test_colmap_log_lines_go_to_its_log_not_the_terminal(tiny_run, tmp_path):
    """A photo folder of mixed sizes that SfM cannot reconstruct: our one line only; COLMAP's own glog lines
    (``E20261207 ... sfm.cc:310] Failed to create any sparse model``) are routed away from stderr."""
    import re

    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(sorted((tiny_run.dataset_dir / "images").iterdir())[:12]):
        pixels = cv2.imread(str(image))
        cv2.imwrite(str(photos / f"{i:03d}.png"), cv2.resize(pixels, (96, 48)) if i % 2 else pixels)
    proc = subprocess.run([sys.executable, "-m", "nerfstage", "capture", str(photos), "-o", str(tmp_path / "ds"),
                           "--quiet"], capture_output=True, text=True, timeout=300)
    glog = [line for line in proc.stderr.splitlines() if re.match(r"^[IWEF]\d{8} ", line)]
    assert not glog, proc.stderr
    if proc.returncode != 0:
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
