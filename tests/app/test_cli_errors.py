"""Options meet the library dataclasses: library errors name the field, ``nerfstage`` prints the flag that sets it;
options not given take the dataclass defaults, which ``--help`` shows without re-declaring them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nerfstage.app.cli import main
from nerfstage.app.cli_common import flag_message, fills, library_defaults
from nerfstage.core.errors import ConfigError


def _error_line(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nerfstage: error: "), lines
    return lines[0].removeprefix("nerfstage: error: ")


def test_capture_errors_name_the_flags(capsys, tmp_path):
    """run_capture's ConfigError says ``frames=1`` / ``camera_model='FOO'``; the CLI says the flags."""
    out = str(tmp_path / "out")
    assert _error_line(capsys, "capture", str(tmp_path), "-o", out, "--frames", "1") == \
        "--frames 1: expected at least 2 frames"
    assert _error_line(capsys, "capture", str(tmp_path), "-o", out, "--max-size", "10") == \
        "--max-size 10: expected at least 64 pixels"
    assert _error_line(capsys, "capture", str(tmp_path), "-o", out, "--camera-model", "foo").startswith(
        "--camera-model 'FOO': expected one of OPENCV, SIMPLE_RADIAL")
    line = _error_line(capsys, "capture", "-o", out, "--colmap", str(tmp_path / "sparse"))
    assert line.startswith("--images: give the image folder of the COLMAP model")
    assert not (tmp_path / "out").exists()


def test_train_config_errors_name_the_flag(capsys, tmp_path):
    """TrainConfig's strict check names the field path; the train command's flag for it leads the line."""
    line = _error_line(capsys, "train", str(tmp_path), "-o", str(tmp_path / "run"), "--device", "cpu",
                       "--pose-refinement", "SO3", "--quiet")
    assert line == "--pose-refinement: config.pose_refinement = 'SO3'; expected one of 'off', 'SO3xR3'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "{scene}"], ["run", "{scene}"], ["demo"]])
def test_unknown_preset_names_the_flag_and_the_presets(capsys, tmp_path, command):
    args = [a.format(scene=tmp_path) for a in command]
    line = _error_line(capsys, *args, "-o", str(tmp_path / "out"), "--preset", "turbo", "--quiet")
    assert line == "--preset: unknown preset 'turbo'; expected one of preview, default, quality"
    assert not (tmp_path / "out").exists()


def test_flag_message_keeps_errors_without_a_flag():
    """No running command, no field, or a field without a flag: the library's message as it is."""
    assert flag_message(ConfigError("frames=1: expected at least 2 frames", field="frames")) == \
        "frames=1: expected at least 2 frames"
    assert flag_message(ConfigError("two\nlines")) == "two"


def test_options_not_given_take_the_dataclass_defaults(monkeypatch, tmp_path, capsys):
    """The CLI passes only given options: a bare ``capture`` builds exactly CaptureOptions(). An error about a
    field the command has no flag for is printed as the library wrote it."""
    from nerfstage.capture import pipeline

    seen = {}

    def fake_capture(input_path, output, options):
        seen["options"] = options
        raise ConfigError("tuning='slow': expected fast or colmap", field="tuning")

    monkeypatch.setattr(pipeline, "run_capture", fake_capture)
    assert _error_line(capsys, "capture", str(tmp_path), "-o", str(tmp_path / "out"), "--quiet") == \
        "tuning='slow': expected fast or colmap"
    assert seen["options"] == pipeline.CaptureOptions(progress=False)
    with pytest.raises(SystemExit):
        main(["capture", str(tmp_path), "-o", str(tmp_path / "out"), "--matcher", "EXHAUSTIVE", "--seed", "3"])
    assert (seen["options"].matcher, seen["options"].seed) == ("exhaustive", 3)


def test_help_shows_the_dataclass_defaults():
    """``--help`` fills each None option with its field's default; units converted where the option's differs."""
    from nerfstage.capture.pipeline import CaptureOptions

    command = fills("nerfstage.capture.pipeline:CaptureOptions", images="colmap_images")
    assert library_defaults(command.sources)["frames"] == CaptureOptions.frames == 150
    code = ("from nerfstage.app.cli import main\n"
            "import sys\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n")
    for args, shown in ((["capture", "--help"], ["[default: 150]", "[default: auto]", "[default: SIMPLE_RADIAL]"]),
                        (["export", "panorama", "--help"], ["[default: 4096]", "[default: 4.0]", "[default: mipmap]"]),
                        (["view", "--help"], ["[default: 7007]", "[default: 512]", "[default: 127.0.0.1]"])):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                              check=True, env={"COLUMNS": "200", "PATH": ""})
        for text in shown:
            assert text in proc.stdout, (args, text, proc.stdout)


def test_render_and_export_budget_errors_name_the_flag(capsys, tiny_run, tmp_path):
    """ImageOptions / PanoramaOptions name ``max_rays_per_chunk`` and ``camera_index``; the commands print flags."""
    line = _error_line(capsys, "render", tiny_run.run_dir, "-o", tmp_path / "a.mp4", "--max-rays-per-chunk", "0",
                       "--device", "cpu", "--quiet")
    assert line == "--max-rays-per-chunk 0: expected a positive number"
    line = _error_line(capsys, "export", "panorama", tiny_run.run_dir, "-o", tmp_path / "p.png", "--width", "64",
                       "--camera-index", "999", "--device", "cpu", "--quiet")
    assert line.startswith("--camera-index 999: the run has 24 cameras (0..23)")
    assert not any(tmp_path.iterdir())


def test_operating_system_errors_are_one_line_naming_the_path(capsys, tiny_run, tmp_path, monkeypatch):
    """An OSError the library did not turn into one of ours still ends as one line naming the path: exit 2 when
    the user's path is at fault (a file where a folder is expected), 1 for anything else (an I/O error)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = _error_line(capsys, "export", "mesh", tiny_run.run_dir, "-o", blocker / "mesh.glb", "--resolution", "16",
                       "--device", "cpu", "--quiet")
    assert str(blocker) in line and "Traceback" not in line
    assert blocker.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [blocker]

    import errno

    from nerfstage.capture import pipeline

    def broken_disk(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "images" / "x.jpg"))

    monkeypatch.setattr(pipeline, "run_capture", broken_disk)
    with pytest.raises(SystemExit) as exit_:
        main(["capture", str(tmp_path), "-o", str(tmp_path / "ds"), "--quiet"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"nerfstage: error: {tmp_path / 'images' / 'x.jpg'}: Input/output error\n"


def test_a_frame_that_cannot_fit_memory_is_refused_before_any_work(capsys, tiny_run, tmp_path):
    """render checks its frame buffers against --memory-gb as export panorama does, with the same message."""
    out = tmp_path / "frames"
    line = _error_line(capsys, "render", tiny_run.run_dir, "-o", out, "--width", "100000", "--height", "100000",
                       "--device", "cpu", "--quiet")
    assert line.startswith("--memory-gb: a 100000x100000 frame needs about 596.05 GiB, over the 4.00 GiB memory "
                           "budget; choose a smaller resolution")
    assert list(tmp_path.iterdir()) == []  # no frames folder, no frame cache
    line = _error_line(capsys, "export", "panorama", tiny_run.run_dir, "-o", tmp_path / "p.exr", "--width", "16384",
                       "--memory-gb", "0.5", "--device", "cpu", "--quiet")
    assert line.startswith("--memory-gb: panorama 16384x8192 with tile_size=1024 needs about 3.09 GiB, over the "
                           "0.50 GiB memory budget")
    assert list(tmp_path.iterdir()) == []


def test_tracked_plates_too_large_for_memory_are_refused_before_any_work(capsys, tiny_run, tmp_path):
    track = tmp_path / "track.csv"
    track.write_text("frame,x,y,z,qw,qx,qy,qz,focal_mm,sensor_width_mm,sensor_height_mm,width,height\n"
                     "1,0,0,0,1,0,0,0,35,36,24,200000,100000\n")
    line = _error_line(capsys, "export", "plates", tiny_run.run_dir, "--track", track, "-o", tmp_path / "plates",
                       "--device", "cpu", "--quiet")
    assert line.startswith("--memory-gb: plate 1 (200000x100000) needs about 1490.12 GiB, over the 4.00 GiB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track.csv"]


def test_a_damaged_run_folder_is_one_line_not_garbage(capsys, tiny_run, tmp_path):
    """NaN in dataparser_transforms.json or in the checkpoint's weights: every command refuses the run (exit 2,
    one line naming the file) instead of rendering garbage or dying in linear algebra."""
    import json
    import shutil

    import torch

    from nerfstage.nerf.checkpoint import latest_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    good = (run / "dataparser_transforms.json").read_text()
    damaged = json.loads(good)
    damaged["transform"][1][3] = float("nan")
    (run / "dataparser_transforms.json").write_text(json.dumps(damaged))
    line = _error_line(capsys, "render", run, "-o", tmp_path / "a.mp4", "--device", "cpu", "--quiet")
    assert line.startswith(f"{run / 'dataparser_transforms.json'}: transform / scale are not finite")
    (run / "dataparser_transforms.json").write_text(good)
    checkpoint = latest_checkpoint(run)
    data = torch.load(checkpoint, weights_only=True)
    first = next(k for k, v in data["model"].items() if v.is_floating_point())
    data["model"][first].view(-1)[0] = float("nan")
    torch.save(data, checkpoint)
    line = _error_line(capsys, "export", "mesh", run, "-o", tmp_path / "m.glb", "--device", "cpu", "--quiet")
    assert line.startswith(f"{checkpoint}: 1 tensor(s) hold NaN or infinity")
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "m.glb").exists()


def test_a_point_cloud_with_another_extension_is_told_it_must_be_ply(capsys, tiny_run, tmp_path):
    line = _error_line(capsys, "export", "pointcloud", tiny_run.run_dir, "-o", tmp_path / "cloud.xyz", "--device",
                       "cpu", "--quiet")
    assert line == f"{tmp_path / 'cloud.xyz'}: point clouds are written as .ply; got '.xyz'"
    assert list(tmp_path.iterdir()) == []
