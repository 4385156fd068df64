"""`nerfstage demo`: the whole chain on the built-in synthetic capture, its pose error against the truth, what it
prints, and the stages redone after a dataset file is lost."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nerfstage.app.chain import DemoFootage, run_demo, summary_lines


def _test_chain():
    """tests/test_chain.py as a module (its tiny chain settings; pytest imports test files by path)."""
    spec = importlib.util.spec_from_file_location("_chain_settings", Path(__file__).with_name("test_chain.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SETTINGS = _test_chain()
FOOTAGE, tiny_options = _SETTINGS.FOOTAGE, _SETTINGS.tiny_options

FRAMES, WIDTH, HEIGHT = FOOTAGE


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    summary = run_demo(workdir, tiny_options(), DemoFootage(WIDTH, HEIGHT))
    return workdir, summary


def test_demo_captures_the_synthetic_footage_accurately(demo_dir):
    workdir, summary = demo_dir
    assert json.loads((workdir / "summary.json").read_text())["stages"]["capture"] == summary["stages"]["capture"]
    capture = summary["stages"]["capture"]
    assert capture["frames_registered"] == capture["frames_selected"] == FRAMES
    assert capture["mean_rotation_error_deg"] < 0.5
    assert capture["mean_centre_error_fraction"] < 0.01
    assert (workdir / "synthetic" / "synthetic.mp4").is_file()


def test_demo_runs_every_stage_and_lists_every_file(demo_dir):
    workdir, summary = demo_dir
    assert list(summary["stages"]) == ["synthetic", "capture", "train", "render", "mesh", "panorama"]
    expected = {"synthetic/synthetic.mp4", "dataset/transforms.json", "run/metrics.json", "renders/orbit.mp4",
                "renders/dolly_zoom.mp4", "export/mesh.glb", "export/plate_latlong.exr", "summary.json",
                "report.html", "thumbnails/orbit.png"}
    assert expected <= set(summary["files"])
    assert len([f for f in summary["files"] if f.startswith("export/cubemap/")]) == 6
    assert all((workdir / f).is_file() for f in summary["files"])


def test_demo_prints_the_pose_error_and_where_the_files_are(demo_dir):
    workdir, summary = demo_dir
    text = "\n".join(summary_lines(summary))
    capture = summary["stages"]["capture"]
    assert f"{capture['mean_rotation_error_deg']:.3f} deg" in text
    assert str(workdir / "report.html") in text and "PSNR" in text


def test_a_lost_dataset_file_redoes_capture_and_what_follows(demo_dir):
    workdir, _ = demo_dir
    (workdir / "dataset" / "transforms.json").unlink()
    summary = run_demo(workdir, tiny_options(), DemoFootage(WIDTH, HEIGHT))
    skipped = {name: stage["skipped"] for name, stage in summary["stages"].items()}
    assert skipped == {"synthetic": True, "capture": False, "train": False, "render": False, "mesh": False,
                       "panorama": False}
    assert (workdir / "dataset" / "transforms.json").is_file()
