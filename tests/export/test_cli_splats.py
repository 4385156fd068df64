"""``nerfstage export splats`` on the tiny run: init, then the distillation, written by extension, count and size
reported; bad input exits 2 with one line, nothing overwritten."""

from __future__ import annotations

from nerfstage.app.cli import main
from nerfstage.render.splats.io import read_splats


def cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_export_splats_init_only_reports_count_and_size(tiny_run, tmp_path, capsys):
    out = tmp_path / "scene.spz"
    assert cli("export", "splats", tiny_run.run_dir, "-o", out, "--max-splats", "800", "--steps", "0", "-q") == 0
    printed = capsys.readouterr().out
    splats = read_splats(out)
    assert 100 < splats.num_splats <= 800
    assert f"splats {splats.num_splats} ({splats.num_splats} placed" in printed
    assert f"({out.stat().st_size / 1e6:.2f} MB)" in printed and str(out) in printed


def test_export_splats_runs_the_distillation_with_the_flags(tiny_run, tmp_path, capsys):
    """The real distillation (export/splats_distill.py) runs after the init: same init, moved splats, budget kept."""
    init, out = tmp_path / "init.ply", tmp_path / "scene.glb"
    assert cli("export", "splats", tiny_run.run_dir, "-o", init, "--max-splats", "600", "--steps", "0", "-q") == 0
    assert cli("export", "splats", tiny_run.run_dir, "-o", out, "--max-splats", "600", "--steps", "6", "-q") == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    before, after = read_splats(init), read_splats(out)
    assert after.num_splats <= 600
    assert f"splats {after.num_splats} ({before.num_splats} placed" in printed
    if after.num_splats == before.num_splats:  # no densify/prune in 6 steps: the same splats, optimised
        moved = (after.means - before.means).abs().max().item()
        assert moved > 1e-6, "the distillation left the splats where the init put them"


def test_existing_file_and_unknown_extension_exit_2_with_one_line(tiny_run, tmp_path, capsys):
    mine = tmp_path / "scene.ply"
    mine.write_bytes(b"mine")
    assert cli("export", "splats", tiny_run.run_dir, "-o", mine, "--steps", "0", "-q") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--overwrite" in err
    assert mine.read_bytes() == b"mine"
    assert cli("export", "splats", tiny_run.run_dir, "-o", tmp_path / "scene.obj", "-q") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown splat file extension '.obj'" in err
    assert cli("export", "splats", tiny_run.run_dir, "-o", tmp_path / "s.ply", "--max-splats", "0", "-q") == 2
    assert "--max-splats 0" in capsys.readouterr().err
