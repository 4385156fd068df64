"""``nerfstage export mesh|pointcloud|panorama|plates`` on the tiny run: each prints what it wrote; bad input
(empty crop box, unknown extension, malformed track, over-budget resolution) exits 2 with one line and leaves
nothing under the final name."""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh

from nerfstage.app.cli import main
from nerfstage.render.writers import read_exr

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cli(*args: str) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_mesh_and_pointcloud_write_and_report(tiny_run, tmp_path, capsys):
    run = tiny_run.run_dir
    assert cli("export", "mesh", run, "-o", tmp_path / "scene.glb", "--resolution", "32", "--texture",
               "--texture-size", "64", "-q") == 0
    out = capsys.readouterr().out
    assert "faces" in out and str(tmp_path / "scene.glb") in out
    mesh = trimesh.load(tmp_path / "scene.glb", force="mesh", process=False)
    assert len(mesh.faces) > 100 and mesh.visual.kind == "texture"
    assert mesh.visual.material.baseColorTexture.size == (64, 64)
    assert cli("export", "pointcloud", run, "-o", tmp_path / "points.ply", "--view-stride", "8", "--downscale", "4",
               "--num-points", "500", "-q") == 0
    assert "points" in capsys.readouterr().out
    cloud = trimesh.load(tmp_path / "points.ply")
    assert 50 < len(cloud.vertices) <= 500


def test_panorama_and_plates_write_and_report(tiny_run, tmp_path, capsys):
    run = tiny_run.run_dir
    assert cli("export", "panorama", run, "-o", tmp_path / "pano.exr", "--width", "16", "-q") == 0
    assert str(tmp_path / "pano.exr") in capsys.readouterr().out
    assert cli("export", "panorama", run, "-o", tmp_path / "flat.exr", "--width", "16", "--no-mipmap", "-q") == 0
    modes = [str(read_exr(tmp_path / name)[1]["tiles"].mode) for name in ("pano.exr", "flat.exr")]
    assert "MIPMAP" in modes[0].upper() and "ONE_LEVEL" in modes[1].upper()
    assert cli("export", "panorama", run, "-o", tmp_path / "cube.png", "--width", "16", "--layout", "cubemap",
               "--position", "0,0,0.5", "--tile-size", "8", "-q") == 0
    assert len(list(tmp_path.glob("cube_*.png"))) == 6
    track = tmp_path / "track.csv"
    track.write_text("frame,x,y,z,yaw_deg,pitch_deg,roll_deg,fov_y_deg,width,height\n"
                     "7,0,-2.5,1.2,0,-5,0,50,16,10\n8,0.2,-2.5,1.2,0,-5,0,50,16,10\n")
    assert cli("export", "plates", run, "--track", track, "-o", tmp_path / "plates", "--overscan", "20",
               "--format", "png", "-q") == 0
    assert "2 plates" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "plates").iterdir()) == ["nerfstage_plates.json", "plate_00007.png",
                                                                       "plate_00008.png"]


@pytest.mark.parametrize(
    ("args", "message", "final"),
    [
        (("mesh", "{run}", "-o", "{tmp}/m.glb", "--bbox", "0,0,0,1,0,1"), "empty along y", "m.glb"),
        (("mesh", "{run}", "-o", "{tmp}/m.fbx"), "unknown mesh extension", "m.fbx"),
        (("mesh", "{run}", "-o", "{tmp}/m.glb", "--bbox", "1,2,3"), "expected 6 comma-separated", "m.glb"),
        (("panorama", "{run}", "-o", "{tmp}/p.tif"), "unknown panorama extension", "p.tif"),
        (("panorama", "{run}", "-o", "{tmp}/p.exr", "--width", "16384", "--tile-size", "0"), "memory budget",
         "p.exr"),
        (("plates", "{run}", "--track", "{tmp}/bad.csv", "-o", "{tmp}/plates"), "bad.csv: line 3", "plates"),
        (("plates", "{run}", "--track", "{tmp}/bad.json", "-o", "{tmp}/plates"), "not valid JSON", "plates"),
        (("pointcloud", "{run}", "-o", "{tmp}/p.glb"), "written as .ply", "p.glb"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(tiny_run, tmp_path, capsys, args, message, final):
    lines = (EXAMPLES / "track_example.csv").read_text().splitlines()
    (tmp_path / "bad.csv").write_text("\n".join(lines[:2] + [lines[2].replace(",", ",,", 1)]) + "\n")
    (tmp_path / "bad.json").write_text('{"frames": [')
    filled = [a.format(run=tiny_run.run_dir, tmp=tmp_path) for a in args]
    assert cli("export", *filled) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nerfstage: error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / final).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or scratch file


def test_existing_output_needs_overwrite(tiny_run, tmp_path, capsys):
    target = tmp_path / "p.png"
    target.write_bytes(b"keep")
    assert cli("export", "panorama", tiny_run.run_dir, "-o", target, "--width", "16", "-q") == 2
    assert "already exists" in capsys.readouterr().err and target.read_bytes() == b"keep"
