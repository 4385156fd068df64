"""Output writers: MP4 (decodable, sized, spherical metadata), PNG sRGB numbers, EXR channels/header, resume."""

from __future__ import annotations

import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from nerfstage.core.errors import ConfigError, InputError, OutputExistsError
from nerfstage.render import (
    FrameSequenceWriter,
    VideoWriter,
    is_valid_frame,
    linear_to_srgb,
    read_exr,
    read_spherical_metadata,
    srgb_to_linear,
    to_srgb8,
    write_exr,
    write_npy,
    write_png,
)


def _frames(n: int, width: int, height: int) -> list[np.ndarray]:
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    return [np.clip(np.concatenate([x + 0 * y, y + 0 * x, np.full((height, width, 1), i / n)], axis=-1) * 255, 0, 255)
            .astype(np.uint8) for i in range(n)]


def _decode(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return frames


def test_mp4_has_exactly_n_decodable_frames_of_the_requested_size(tmp_path):
    frames = _frames(12, 64, 48)
    with VideoWriter(tmp_path / "orbit.mp4", 64, 48, fps=24) as writer:
        for frame in frames:
            writer.write(frame)
    decoded = _decode(tmp_path / "orbit.mp4")
    assert len(decoded) == 12 and all(f.shape == (48, 64, 3) for f in decoded)
    capture = cv2.VideoCapture(str(tmp_path / "orbit.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0)
    capture.release()
    error = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(decoded, frames, strict=True)])
    assert error < 4.0  # mean absolute error in 8-bit levels (crf 18, chroma subsampling)
    assert [p.name for p in tmp_path.iterdir()] == ["orbit.mp4"]  # no temp file left


def test_mp4_float_frames_are_srgb_encoded(tmp_path):
    with VideoWriter(tmp_path / "grey.mp4", 32, 32, fps=10) as writer:
        for _ in range(3):
            writer.write(np.full((32, 32, 3), 0.214, dtype=np.float32))  # linear 0.214 -> sRGB ~ 0.5
    decoded = _decode(tmp_path / "grey.mp4")
    assert len(decoded) == 3 and abs(decoded[0].mean() - 128) < 3


def test_equirect_mp4_carries_spherical_metadata(tmp_path):
    with VideoWriter(tmp_path / "pano.mp4", 64, 32, fps=12, spherical=True) as writer:
        for frame in _frames(5, 64, 32):
            writer.write(frame)
    xml = read_spherical_metadata(tmp_path / "pano.mp4")
    assert xml is not None and "<GSpherical:ProjectionType>equirectangular" in xml
    assert len(_decode(tmp_path / "pano.mp4")) == 5  # the edited file still decodes fully
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "pano.mp4")],
                           capture_output=True, text=True, timeout=60)
    assert "Spherical Mapping: equirectangular" in probe.stderr  # FFmpeg (players built on it) sees a 360 video
    with VideoWriter(tmp_path / "flat.mp4", 64, 32, fps=12) as writer:
        writer.write(_frames(1, 64, 32)[0])
    assert read_spherical_metadata(tmp_path / "flat.mp4") is None


def test_mp4_errors_leave_nothing_under_the_final_name(tmp_path):
    with pytest.raises(ConfigError, match="even width and height"):
        VideoWriter(tmp_path / "odd.mp4", 63, 48, fps=24)
    with pytest.raises(RuntimeError, match="render failed"):
        with VideoWriter(tmp_path / "crash.mp4", 64, 48, fps=24) as writer:
            writer.write(_frames(1, 64, 48)[0])
            raise RuntimeError("render failed")
    with pytest.raises(ConfigError, match="expected uint8"):
        with VideoWriter(tmp_path / "size.mp4", 64, 48, fps=24) as writer:
            writer.write(np.zeros((48, 62, 3), np.uint8))
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="blocker"):
        VideoWriter(blocker / "out.mp4", 64, 48, fps=24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    (tmp_path / "taken.mp4").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        VideoWriter(tmp_path / "taken.mp4", 64, 48, fps=24)


def test_srgb_transfer_numbers():
    linear = np.array([0.0, 0.002, 0.0031308, 0.18, 0.5, 1.0, 2.0])
    encoded = linear_to_srgb(linear)
    expected = [0.0, 0.02584, 0.040449936, 0.46135613, 0.73535698, 1.0, 1.0]
    assert np.allclose(encoded, expected, atol=1e-6)
    grid = np.linspace(0, 1, 1001)
    assert np.abs(srgb_to_linear(linear_to_srgb(grid)) - grid).max() < 1e-6
    assert to_srgb8(np.array([[[0.18, 0.5, 1.0]]])).tolist() == [[[118, 188, 255]]]
    rgba = to_srgb8(np.array([[[0.5, 0.5, 0.5, 0.5]]]))
    assert rgba.tolist() == [[[188, 188, 188, 128]]]  # alpha is not gamma-encoded


def test_png_from_linear_float_reads_back_in_srgb(tmp_path):
    image = np.zeros((6, 8, 3), np.float32)
    image[..., 0], image[..., 1], image[..., 2] = 0.18, 0.5, 1.0
    path = write_png(tmp_path / "f.png", image)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint8 and back.shape == (6, 8, 3) and back[0, 0].tolist() == [118, 188, 255]


def test_exr_reads_back_as_float_with_channels_and_colour_header(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((10, 14, 3)) * 4).astype(np.float32)  # scene-linear, above 1 is kept
    channels, header = read_exr(write_exr(tmp_path / "rgb.exr", rgb))
    assert sorted(channels) == ["B", "G", "R"] and channels["R"].dtype == np.float32
    assert np.array_equal(np.stack([channels[c] for c in "RGB"], axis=-1), rgb)
    assert np.allclose(header["chromaticities"], (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290), atol=1e-6)
    rgba = np.dstack([rgb, rgb[..., :1] / 4])
    half, _ = read_exr(write_exr(tmp_path / "half.exr", rgba, half=True, envmap="latlong"))
    assert sorted(half) == ["A", "B", "G", "R"] and half["G"].dtype == np.float16
    assert str(read_exr(tmp_path / "half.exr")[1]["envmap"]).endswith("LATLONG")
    assert np.abs(half["G"].astype(np.float32) - rgb[..., 1]).max() < 4e-3
    depth = rng.random((10, 14)).astype(np.float32) * 30
    z, _ = read_exr(write_exr(tmp_path / "depth.exr", depth))
    assert list(z) == ["Z"] and np.array_equal(z["Z"], depth)
    np_path = write_npy(tmp_path / "depth.npy", depth)
    assert np.array_equal(np.load(np_path), depth) and is_valid_frame(np_path, 14, 10)


@pytest.mark.parametrize("kind", ["png", "exr", "npy"])
def test_resume_skips_valid_frames_and_redoes_broken_ones(tmp_path, kind):
    frames = [np.full((12, 16, 3), i / 10, np.float32) for i in range(5)]
    writer = FrameSequenceWriter(tmp_path / "frames", kind, 16, 12)
    for i, frame in enumerate(frames):
        writer.write(i, frame)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{i:05d}.{kind}" for i in range(1, 6)]
    truncated = writer.paths(2)[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    FrameSequenceWriter(tmp_path / "frames", kind, 16, 12, overwrite=True).write(3, np.zeros((12, 14, 3), np.float32))
    with pytest.raises(OutputExistsError, match="--resume"):
        FrameSequenceWriter(tmp_path / "frames", kind, 16, 12)
    resumed = FrameSequenceWriter(tmp_path / "frames", kind, 16, 12, resume=True)
    assert resumed.pending(6) == [2, 3, 5]  # truncated, wrong size, never written
    for i in resumed.pending(6):
        resumed.write(i, np.zeros((12, 16, 3), np.float32))
    assert resumed.pending(6) == []


def test_cubemap_faces_as_six_files(tmp_path):
    strip = np.concatenate([np.full((8, 8, 3), k / 6, np.float32) for k in range(6)], axis=1)
    writer = FrameSequenceWriter(tmp_path, "exr", 48, 8, face_suffixes=("px", "nx", "py", "ny", "pz", "nz"),
                                 resume=True)
    paths = writer.write(0, strip)
    assert [p.name for p in paths] == [f"frame_00001_{s}.exr" for s in ("px", "nx", "py", "ny", "pz", "nz")]
    assert read_exr(paths[4])[0]["R"][0, 0] == pytest.approx(4 / 6) and writer.pending(1) == []


def test_unwritable_frame_folder_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        FrameSequenceWriter(tmp_path / "file", "png")
    with pytest.raises(InputError, match="cannot create"):
        FrameSequenceWriter(tmp_path / "file" / "frames", "png")
    with pytest.raises(ConfigError, match="frame format"):
        FrameSequenceWriter(tmp_path / "out", "jpg")
