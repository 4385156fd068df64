"""``nerfstage capture`` from the command line: fast --help without torch/pycolmap, bad inputs -> exit 2 with one
line naming the file, existing output untouched, and a real conversion printing its summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _nerfstage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nerfstage", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nerfstage: error: ")
    return lines[0]


@pytest.mark.parametrize("args", [["--help"], ["capture", "--help"]])
def test_help_imports_neither_torch_nor_pycolmap(args):
    code = (
        "import sys\nfrom nerfstage.app.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print('torch' in sys.modules, 'pycolmap' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "False False"
    if args[0] == "capture":
        for flag in ("--frames", "--max-size", "--matcher", "--mapper", "--camera-model", "--seed", "--overwrite"):
            assert flag in proc.stdout


def test_missing_input(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    line = _one_error_line(_nerfstage("capture", str(missing), "-o", str(tmp_path / "out")))
    assert str(missing) in line
    assert not (tmp_path / "out").exists()


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    line = _one_error_line(_nerfstage("capture", str(tmp_path / "empty"), "-o", str(tmp_path / "out")))
    assert str(tmp_path / "empty") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no output, no partial folder


def test_empty_video(tmp_path):
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    line = _one_error_line(_nerfstage("capture", str(video), "-o", str(tmp_path / "out")))
    assert str(video) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4"]


def test_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "transforms.json").write_text("{}")
    (tmp_path / "photos").mkdir()
    line = _one_error_line(_nerfstage("capture", str(tmp_path / "photos"), "-o", str(out)))
    assert str(out) in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["transforms.json"] and (out / "transforms.json").read_text() == "{}"


def test_bad_choice_is_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    line = _one_error_line(_nerfstage("capture", str(tmp_path / "photos"), "-o", str(tmp_path / "o"), "--matcher", "x"))
    assert "--matcher" in line


def test_colmap_conversion_prints_summary(shared_data, tmp_path):
    beer = shared_data("beer_video")
    out = tmp_path / "beer"
    proc = _nerfstage(
        "capture", "--colmap", str(beer / "sparse" / "0"), "--images", str(beer / "images"), "-o", str(out), "-q"
    )
    assert proc.returncode == 0, proc.stderr
    assert "registered 71/71 frames" in proc.stdout and str(out) in proc.stdout
    assert (out / "transforms.json").is_file() and (out / "capture_report.json").is_file()
    assert Path(out / "images" / "0000.jpg").is_file()
