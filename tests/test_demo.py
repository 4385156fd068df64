"""`nerfstage demo`: the chain on the synthetic capture, its figures against the truth, and resumption."""

from __future__ import annotations

import json

import pytest

from nerfstage.chain import DemoOptions, run_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    run_demo(workdir, DemoOptions(frames=24, width=320, height=240, progress=False))
    return workdir


def test_demo_captures_the_synthetic_footage_accurately(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    capture = summary["stages"]["capture"]
    assert capture["frames_registered"] == capture["frames_selected"] == 24
    assert capture["mean_rotation_error_deg"] < 0.5
    assert capture["mean_centre_error_fraction"] < 0.01
    assert (demo_dir / "dataset" / "transforms.json").is_file()
    assert (demo_dir / "synthetic" / "synthetic.mp4").is_file()


def test_second_demo_run_keeps_valid_outputs(demo_dir):
    before = (demo_dir / "dataset" / "transforms.json").stat().st_mtime_ns
    summary = run_demo(demo_dir, DemoOptions(frames=24, width=320, height=240, progress=False))
    assert all(stage["skipped"] for stage in summary["stages"].values())
    assert (demo_dir / "dataset" / "transforms.json").stat().st_mtime_ns == before



def test_an_invalid_stage_output_is_rebuilt(demo_dir):
    (demo_dir / "dataset" / "transforms.json").unlink()
    summary = run_demo(demo_dir, DemoOptions(frames=24, width=320, height=240, progress=False))
    assert summary["stages"]["synthetic"]["skipped"]
    assert not summary["stages"]["capture"]["skipped"]
    assert (demo_dir / "dataset" / "transforms.json").is_file()
    assert summary["stages"]["capture"]["frames_registered"] == 24
