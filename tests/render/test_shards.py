"""Issue 17, rendering: farm shards (--frames / --shard) and torchrun ranks give the single-process output bit for
bit once assembled (MP4, PNG frames, mip-mapped EXR panorama, EXR plates); a missing shard is named; a half-done
shard resumes; bad --frames / --shard are one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nerfstage.app.assemble import assemble
from nerfstage.core.errors import ConfigError, InputError, OutputExistsError
from nerfstage.core.shards import ShardSpec, parse_frames, parse_shard, ranges
from nerfstage.export.panorama import PanoramaOptions, export_panorama
from nerfstage.export.plates import PlateOptions, export_plates
from nerfstage.render.pipeline import RenderOptions, frame_cache, render_path
from nerfstage.render.plan import ShotOptions

REPO = Path(__file__).resolve().parents[2]
SHOT = ShotOptions(path="orbit", fps=7, seconds=1, width=32, height=24)  # 7 frames
PANO = dict(width=64, tile_size=16, progress=False)  # 4 x 2 = 8 tiles, mip-mapped half EXR


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def shard(k: int, n: int, frames: str | None = None) -> ShardSpec:
    return ShardSpec(parse_frames(frames), (k, n))


def quiet(**kw) -> RenderOptions:
    return RenderOptions(progress=False, **kw)


def decoded(video: Path) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def same_files(a: Path, b: Path, pattern: str) -> list[str]:
    names = sorted(p.name for p in a.glob(pattern))
    assert names and names == sorted(p.name for p in b.glob(pattern))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def write_track(tiny_run, path: Path, indices: list[int]) -> None:
    """A CSV track through the dataset cameras ``indices`` (dataset frame, quaternions, their vertical fov)."""
    import json

    from scipy.spatial.transform import Rotation

    data = json.loads((tiny_run.dataset_dir / "transforms.json").read_text())
    fov = np.degrees(2 * np.arctan(0.5 * data["h"] / data["fl_y"]))
    rows = ["frame,x,y,z,qw,qx,qy,qz,fov_y_deg,width,height"]
    for n, i in enumerate(indices, start=1):
        pose = np.asarray(data["frames"][i]["transform_matrix"])
        x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
        rows.append(f"{n},{pose[0, 3]},{pose[1, 3]},{pose[2, 3]},{w},{x},{y},{z},{fov},{data['w']},{data['h']}")
    path.write_text("\n".join(rows) + "\n")


def exr_split(path: Path) -> tuple[dict[str, bytes], bytes]:
    """(header attributes name -> raw value, everything after the header) of a single-part EXR file."""
    import struct

    data, at, attributes = path.read_bytes(), 8, {}
    while data[at] != 0:
        name_end = data.index(b"\0", at)
        type_end = data.index(b"\0", name_end + 1)
        (size,) = struct.unpack("<i", data[type_end + 1:type_end + 5])
        attributes[data[at:name_end].decode()] = data[type_end + 5:type_end + 5 + size]
        at = type_end + 5 + size
    return attributes, data[at + 1:]


def same_exr(a: Path, b: Path) -> None:
    """Same EXR bytes apart from the time stamps in the header (offset table, tiles, every other attribute)."""
    (head_a, body_a), (head_b, body_b) = exr_split(a), exr_split(b)
    for stamp in ("DateTime", "capDate"):
        assert len(head_a.pop(stamp, b"")) == len(head_b.pop(stamp, b""))
    assert head_a == head_b and body_a == body_b


def exr_levels(path: Path) -> list[np.ndarray]:
    """Every mip level's pixels of an EXR (OpenImageIO)."""
    import OpenImageIO as oiio

    source = oiio.ImageInput.open(str(path))
    levels = []
    for level in range(64):
        if not source.seek_subimage(0, level):
            break
        levels.append(source.read_image(format="half"))
    source.close()
    return levels


def test_frames_and_shard_parsing_and_selection():
    assert parse_frames("3-7") == (3, 7) and parse_frames("5") == (5, 5) and parse_shard("2/4") == (2, 4)
    for bad in ("0-3", "7-3", "a-b", "1-2-3"):
        with pytest.raises(ConfigError, match="frames"):
            parse_frames(bad)
    for bad in ("0/2", "3/2", "1", "x/y"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)
    spec = ShardSpec((2, 9), (2, 3), rank=1, world_size=2)
    assert spec.candidates(10) == [2, 5, 8] and spec.select(10) == [5]
    covered = sorted(i for k in (1, 2, 3) for i in shard(k, 3).select(10))
    assert covered == list(range(10))
    with pytest.raises(ConfigError, match="has 10 items"):
        ShardSpec((5, 11)).select(10)
    assert ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


def test_two_farm_shards_then_assemble_equal_one_process_mp4_and_png(loaded, tmp_path):
    single = render_path(loaded, tmp_path / "one.mp4", SHOT, quiet())
    for k in (1, 2):
        part = render_path(loaded, tmp_path / "two.mp4", SHOT, quiet(), shard=shard(k, 2))
        assert part.rendered == (4 if k == 1 else 3)
        assert not (tmp_path / "two.mp4").exists()
    assert assemble(tmp_path / "two.mp4") == ("video", [tmp_path / "two.mp4"])
    assert not frame_cache(tmp_path / "two.mp4").exists()
    one, two = decoded(single.output), decoded(tmp_path / "two.mp4")
    assert len(one) == len(two) == 7 and all(np.array_equal(a, b) for a, b in zip(one, two))
    assert single.output.read_bytes() == (tmp_path / "two.mp4").read_bytes()

    render_path(loaded, tmp_path / "one_png", SHOT, quiet())
    with pytest.raises(OutputExistsError, match="already holds frame_"):  # frames of another render: never kept
        render_path(loaded, tmp_path / "one_png", SHOT, quiet(), shard=shard(1, 2))
    for frames in ("1-3", "4-7"):  # Deadline-style frame ranges
        render_path(loaded, tmp_path / "two_png", SHOT, quiet(), shard=ShardSpec(parse_frames(frames)))
    assemble(tmp_path / "two_png")
    assert len(same_files(tmp_path / "one_png", tmp_path / "two_png", "*")) == 7  # no job file left behind


def test_sharded_panorama_and_plates_equal_one_process(loaded, tiny_run, tmp_path):
    export_panorama(loaded, tmp_path / "one.exr", PanoramaOptions(**PANO))
    for k in (1, 2, 3):
        export_panorama(loaded, tmp_path / "three.exr", PanoramaOptions(**PANO), shard=shard(k, 3))
    assert not (tmp_path / "three.exr").exists()
    assert assemble(tmp_path / "three.exr")[0] == "panorama"
    one, three = exr_levels(tmp_path / "one.exr"), exr_levels(tmp_path / "three.exr")
    assert len(one) == len(three) == 7  # 64x32 -> 1x1
    assert all(np.array_equal(a, b) for a, b in zip(one, three))
    same_exr(tmp_path / "one.exr", tmp_path / "three.exr")
    assert sorted(p.name for p in tmp_path.iterdir() if "three" in p.name) == ["three.exr"]

    write_track(tiny_run, tmp_path / "track.csv", [2, 5, 9])
    export_plates(loaded, tmp_path / "track.csv", tmp_path / "plates1", PlateOptions(progress=False))
    for k in (1, 2):
        export_plates(loaded, tmp_path / "track.csv", tmp_path / "plates2", PlateOptions(progress=False),
                      shard=shard(k, 2))
    assert assemble(tmp_path / "plates2")[0] == "plates"
    names = same_files(tmp_path / "plates1", tmp_path / "plates2", "*")
    assert names == ["nerfstage_plates.json", "plate_00001.exr", "plate_00002.exr", "plate_00003.exr"]


def test_missing_shard_is_named_and_a_half_done_shard_resumes(loaded, tmp_path):
    out = tmp_path / "half.mp4"
    render_path(loaded, out, SHOT, quiet(), shard=shard(1, 2))
    with pytest.raises(InputError, match=r"3 frames missing \(frames 2, 4, 6: frame_00002.png.*rerun --shard 2/2"):
        assemble(out)
    first = render_path(loaded, out, SHOT, quiet(), shard=shard(2, 2))
    cache = frame_cache(out)
    (cache / "frame_00004.png").unlink()  # a task killed half-way
    (cache / "frame_00006.png").write_bytes(b"\x89PNG truncated")
    stamp = (cache / "frame_00002.png").stat().st_mtime_ns
    again = render_path(loaded, out, SHOT, quiet(), shard=shard(2, 2))
    assert (first.rendered, again.rendered) == (3, 2)
    assert (cache / "frame_00002.png").stat().st_mtime_ns == stamp  # kept, not re-rendered
    assemble(out)
    with pytest.raises(InputError, match="no sharded"):
        assemble(tmp_path / "nothing.mp4")

    panorama = tmp_path / "p.exr"
    export_panorama(loaded, panorama, PanoramaOptions(**PANO), shard=shard(2, 4))
    with pytest.raises(InputError, match=r"6 tiles missing .*rerun --shard 1/4, --shard 3/4, --shard 4/4"):
        assemble(panorama)
    with pytest.raises(ConfigError, match="different sharded job"):
        export_panorama(loaded, panorama, PanoramaOptions(**(PANO | {"width": 32})), shard=shard(1, 4))


def _env(threads: int = 1) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}


def _nerfstage(args: list[str], nproc: int = 0) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                "-m", "nerfstage"] if nproc else ["-m", "nerfstage"]
    return subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, env=_env(),
                          timeout=300, cwd=REPO)


def test_torchrun_two_gloo_ranks_equal_one_process(tiny_run, tmp_path):
    run = str(tiny_run.run_dir)
    shot = ["--path", "orbit", "--fps", "7", "--seconds", "1", "--width", "32", "--height", "24", "-q"]
    one = _nerfstage(["render", run, "-o", str(tmp_path / "one.mp4"), *shot])
    two = _nerfstage(["render", run, "-o", str(tmp_path / "two.mp4"), *shot], nproc=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    assert two.stdout.count("7 frames") == 1  # rank 0 reports, once
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()
    assert not frame_cache(tmp_path / "two.mp4").exists()
    pano = ["--width", "64", "--tile-size", "16", "-q"]
    one = _nerfstage(["export", "panorama", run, "-o", str(tmp_path / "one.exr"), *pano])
    two = _nerfstage(["export", "panorama", run, "-o", str(tmp_path / "two.exr"), *pano], nproc=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    same_exr(tmp_path / "one.exr", tmp_path / "two.exr")


def test_cli_shard_errors_are_one_line_and_assemble_names_missing(tiny_run, tmp_path):
    run = str(tiny_run.run_dir)
    for flag, value in (("--shard", "3/2"), ("--frames", "9-2")):
        proc = _nerfstage(["render", run, "-o", str(tmp_path / "x.mp4"), flag, value])
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"nerfstage: error: {flag} "), lines
    proc = _nerfstage(["render", run, "-o", str(tmp_path / "x.mp4"), "--frames", "5-99", "--fps", "2",
                       "--seconds", "1", "--width", "16", "--height", "12", "-q"])
    assert proc.returncode == 2 and "--frames 5-99: the job has 2 items" in proc.stderr, proc.stderr
    proc = _nerfstage(["assemble", str(tmp_path / "x.mp4")])
    assert proc.returncode == 2 and "no sharded render to assemble" in proc.stderr
