"""benchmarks/gpu_check.sh in smoke mode (CPU, tiny sizes): every part runs and prints its row of the one table,
the CUDA parts say they were skipped, and the overall deadline turns parts it cannot fit into "out of time" rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
NUMBER = r"[\d,]+(?:\.\d+)?"


def run_check(tmp_path: Path, lego_root: Path, **env: str) -> dict[str, str]:
    """Run the script in smoke mode; {part: figure} of the table it printed."""
    environ = {**os.environ, "PYTHON": sys.executable, "NERFSTAGE_DATA": str(lego_root),
               "GPU_CHECK_WORK": str(tmp_path / "work"), **env}
    result = subprocess.run(["bash", str(SCRIPT), "--smoke"], cwd=tmp_path, env=environ, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("nerfstage GPU check (smoke)"))
    assert re.match(r"\| part +\| figure \|$", lines[header + 1]) and lines[header + 2] == "|---|---|"
    table = {}
    for line in lines[header + 3:]:
        if not line.startswith("| "):
            break
        part, figure = (cell.strip() for cell in line.strip("| ").split(" | ", 1))
        table[part] = figure
    return table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the lines printed without a CUDA device")
def test_smoke_mode_prints_every_row(tmp_path, shared_data):
    lego = shared_data("lego_400")
    table = run_check(tmp_path, lego.parent)
    assert list(table) == ["install", "C++ kernels", "hash grid torch", "hash grid cpp", "hash grid tcnn",
                           "hash grid cuda", "lego train (preview, cpu)", "render 64x36 (cpu)"]
    assert table["install"].startswith("skipped: smoke mode")
    assert re.fullmatch(rf"both built or loaded in {NUMBER} s; dependencies missing: none", table["C++ kernels"])
    for backend in ("torch", "cpp"):
        assert re.fullmatch(rf"train {NUMBER} samples/s \({NUMBER} ms/step\), forward {NUMBER} samples/s; "
                            r"batch 2\^10, cpu 2 threads", table[f"hash grid {backend}"])
    assert table["hash grid tcnn"] == table["hash grid cuda"] == "skipped: no CUDA device"
    train = re.fullmatch(rf"PSNR ({NUMBER}) dB, SSIM ({NUMBER}), 3 steps in {NUMBER} s, {NUMBER} samples/s, "
                         rf"wall {NUMBER} s, backend cpp, bar FAIL", table["lego train (preview, cpu)"])
    assert train and 3.0 < float(train[1]) < 20.0  # 3 steps: far from the bar, but an image was rendered
    render = re.fullmatch(rf"({NUMBER}) frames/s \({NUMBER} s per frame, {NUMBER} rays/s, {NUMBER} samples per "
                          r"ray\), step 3", table["render 64x36 (cpu)"])
    assert render and float(render[1]) > 0


def test_deadline_skips_what_does_not_fit(tmp_path):
    table = run_check(tmp_path, tmp_path / "no_data", GPU_CHECK_SECONDS="5")
    assert table == {
        "install": "skipped: out of time (overall deadline 5 s)",
        "hash grid": "skipped: out of time (overall deadline 5 s)",
        "lego train": f"skipped: no lego data at {tmp_path / 'no_data' / 'lego_400'} (set NERFSTAGE_DATA)",
        "render": "skipped: no trained lego run",
    }
