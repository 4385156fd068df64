"""Frame extraction from video: sharpest frame per window, rotation metadata, resizing, errors, real footage."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from nerfstage.capture.sharpness import gray_sharpness, laplacian_variance
from nerfstage.capture.video import (
    count_frames,
    extract_sharpest_frames,
    is_video_file,
    probe_video,
    write_video,
)
from nerfstage.core.errors import ConfigError, InputError, VideoError


def textured_frames(count: int, width: int = 160, height: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Distinct sharp RGB frames: a fixed random texture sliding 3 px per frame."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height, width + 3 * count, 3), dtype=np.uint8)
    texture = cv2.resize(cv2.resize(texture, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), texture.shape[1::-1])
    return [np.ascontiguousarray(texture[:, 3 * i : 3 * i + width]) for i in range(count)]


def blurred(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(frame, (0, 0), sigmaX=3.0)


def write_rotated(path: Path, frames: list[np.ndarray], degrees: float, hflip: bool = False, vflip: bool = False):
    """H.264 MP4 whose display matrix rotates by ``degrees`` counter-clockwise (PyAV's convention)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------- sharpness


def test_laplacian_variance_of_an_impulse_matches_the_formula():
    image = np.zeros((11, 11), np.uint8)
    image[5, 5] = 100  # Laplacian: -400 at the centre, +100 at its 4 neighbours, 0 elsewhere; mean 0
    expected = (400**2 + 4 * 100**2) / 121
    assert laplacian_variance(image) == pytest.approx(expected, rel=1e-9)
    assert laplacian_variance(image.astype(np.float32)) == pytest.approx(expected, rel=1e-9)
    assert laplacian_variance(np.full((8, 8), 77, np.uint8)) == 0.0
    with pytest.raises(ValueError, match=r"\(4, 4, 3\)"):
        laplacian_variance(np.zeros((4, 4, 3), np.uint8))


def test_blur_lowers_sharpness_by_a_large_factor():
    gray = cv2.cvtColor(textured_frames(1, 640, 360)[0], cv2.COLOR_RGB2GRAY)
    sharp, soft = gray_sharpness(gray), gray_sharpness(blurred(gray))
    assert sharp > 20 * soft > 0


# ---------------------------------------------------------------------------------------------- selection


def test_keeps_the_one_sharp_frame_of_every_window(tmp_path):
    frames, windows, per_window = textured_frames(48), 8, 6
    rng = np.random.default_rng(1)
    sharp_indices = [w * per_window + int(rng.integers(per_window)) for w in range(windows)]
    shown = [f if i in sharp_indices else blurred(f) for i, f in enumerate(frames)]
    video = tmp_path / "clip.mp4"
    write_video(video, shown, fps=24)

    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=windows, progress=False)

    assert (got.frames_decoded, got.frames_selected) == (48, windows)
    assert got.source_indices == sharp_indices  # one per window, in time order
    assert [p.name for p in got.image_paths] == [f"frame_{k:05d}.jpg" for k in range(1, windows + 1)]
    assert sorted((tmp_path / "images").iterdir()) == got.image_paths
    assert (got.size, got.rotation_deg, got.fps) == ((160, 96), 0, 24.0)
    for path, index in zip(got.image_paths, got.source_indices):  # each file holds the frame it claims
        errors = [np.abs(read_rgb(path).astype(int) - f).mean() for f in frames]  # vs the sharp originals
        assert int(np.argmin(errors)) == index and errors[index] < 0.5 * sorted(errors)[1]
    assert min(got.sharpness) > 5 * max(gray_sharpness(cv2.cvtColor(blurred(f), cv2.COLOR_RGB2GRAY)) for f in frames)


def test_more_windows_than_frames_keeps_every_frame(tmp_path):
    video = tmp_path / "short.mp4"
    write_video(video, textured_frames(12), fps=30)
    got = extract_sharpest_frames(video, tmp_path / "out", num_frames=150, progress=False)
    assert got.frames_selected == got.frames_decoded == 12
    assert got.source_indices == list(range(12))
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 12


def test_unknown_frame_count_is_counted_from_packets(tmp_path):
    video = tmp_path / "clip.mkv"  # Matroska stores no frame count: stream.frames == 0
    write_video(video, textured_frames(30), fps=30)
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames == 0
    assert count_frames(video) == 30
    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=10, progress=False)
    assert (got.frames_decoded, got.frames_selected) == (30, 10)
    assert [i // 3 for i in got.source_indices] == list(range(10))  # one frame from each window of 3


def test_truncated_stream_keeps_what_decodes(tmp_path):
    whole = tmp_path / "whole.mkv"  # Matroska stays readable when cut short (an MP4 loses its index)
    write_video(whole, textured_frames(30), fps=30)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    got = extract_sharpest_frames(cut, tmp_path / "images", num_frames=5, progress=False)
    assert 5 <= got.frames_decoded < 30 and got.frames_selected == 5
    assert got.frames_decoded == count_frames(cut)


@pytest.mark.parametrize(
    ("max_size", "expected"), [(100, (100, 60)), (4000, (320, 192)), (192, (192, 115)), (320, (320, 192))]
)
def test_resizes_to_max_size_keeping_aspect_and_never_upscales(tmp_path, max_size, expected):
    video = tmp_path / "wide.mp4"
    write_video(video, textured_frames(4, width=320, height=192), fps=30)
    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=2, max_size=max_size, progress=False)
    assert got.size == expected
    assert all(cv2.imread(str(p)).shape[1::-1] == expected for p in got.image_paths)


# ---------------------------------------------------------------------------------------------- rotation


def corner_marked_frames(count: int = 3) -> list[np.ndarray]:
    """Landscape 96x64 frames: red block top-left, green bottom-left, blue top-right of the stored pixels."""
    frame = np.full((64, 96, 3), 40, np.uint8)
    frame[:16, :24], frame[-16:, :24], frame[:16, -24:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    return [frame] * count


def test_phone_portrait_video_comes_out_portrait(tmp_path):
    # Phones store portrait video as landscape pixels that the player turns 90 degrees clockwise.
    video = write_rotated(tmp_path / "phone.mp4", corner_marked_frames(), degrees=-90)
    info = probe_video(video)
    assert (info.width, info.height, info.rotation_deg, info.frame_count) == (64, 96, 270, 3)
    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=2, progress=False)
    image = read_rgb(got.image_paths[0])
    assert image.shape == (96, 64, 3) and got.size == (64, 96) and got.rotation_deg == 270
    # turned clockwise: top-left -> top-right, bottom-left -> top-left, top-right -> bottom-right
    assert np.abs(image[4, -4].astype(int) - (255, 0, 0)).max() < 30
    assert np.abs(image[4, 4].astype(int) - (0, 255, 0)).max() < 30
    assert np.abs(image[-4, -4].astype(int) - (0, 0, 255)).max() < 30


@pytest.mark.parametrize(
    ("degrees", "hflip", "vflip"), [(-90, False, False), (90, False, False), (180, False, False), (0, True, False),
                                    (90, False, True)]
)
def test_display_matrix_matches_ffmpegs_autorotate(tmp_path, degrees, hflip, vflip):
    import imageio_ffmpeg  # the bundled binary: only the test uses it, as an independent reference

    video = write_rotated(tmp_path / "rot.mp4", corner_marked_frames(), degrees, hflip, vflip)
    reference = tmp_path / "ffmpeg.png"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-frames:v", "1"]
    subprocess.run([*command, str(reference)], check=True, timeout=60)
    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=2, progress=False)
    ours, theirs = cv2.imread(str(got.image_paths[0])), cv2.imread(str(reference))
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs).mean() < 3.0  # JPEG noise only; a wrong turn gives ~60


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="nothere.mp4.*does not exist"):
        extract_sharpest_frames(tmp_path / "nothere.mp4", tmp_path / "images", progress=False)


def test_text_file_renamed_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my shooting notes, not a video\n" * 20)
    with pytest.raises(VideoError, match="notes.mp4.*not a readable video"):
        extract_sharpest_frames(fake, tmp_path / "images", progress=False)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mov"):
        extract_sharpest_frames(empty, tmp_path / "images", progress=False)
    with pytest.raises(VideoError, match="empty.mov"):
        probe_video(empty)


def test_one_frame_video(tmp_path):
    video = tmp_path / "single.mp4"
    write_video(video, textured_frames(1), fps=30)
    with pytest.raises(VideoError, match=r"single.mp4.*only 1 usable frame \(1 decoded\)"):
        extract_sharpest_frames(video, tmp_path / "images", progress=False)


def test_audio_only_file(tmp_path):
    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoError, match="voice.m4a.*no video stream"):
        extract_sharpest_frames(audio, tmp_path / "images", progress=False)


def test_bad_options_and_the_error_type(tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, textured_frames(4), fps=30)
    with pytest.raises(ConfigError, match="num_frames=1"):
        extract_sharpest_frames(video, tmp_path / "images", num_frames=1, progress=False)
    with pytest.raises(ConfigError, match="max_size=0"):
        extract_sharpest_frames(video, tmp_path / "images", max_size=0, progress=False)
    assert issubclass(VideoError, InputError)


def test_is_video_file(tmp_path):
    (tmp_path / "A.MP4").write_bytes(b"x")
    (tmp_path / "b.webm").write_bytes(b"x")
    (tmp_path / "c.jpg").write_bytes(b"x")
    (tmp_path / "d.mov").mkdir()
    assert [is_video_file(tmp_path / n) for n in ("A.MP4", "b.webm", "c.jpg", "d.mov", "missing.mp4")] == [
        True, True, False, False, False
    ]


# ---------------------------------------------------------------------------------------------- real footage


def test_real_phone_video(shared_data, tmp_path):
    video = shared_data("beer_video") / "Beer.mp4"  # 720x1280 portrait pixels, no display rotation, 706 frames
    info = probe_video(video)
    assert (info.width, info.height, info.rotation_deg, info.frame_count) == (720, 1280, 0, 706)
    got = extract_sharpest_frames(video, tmp_path / "images", num_frames=60, progress=False)
    assert got.frames_selected == 60 and abs(got.frames_decoded - 706) <= 3
    assert got.size == (720, 1280) and got.rotation_deg == 0
    assert all(b > a for a, b in zip(got.source_indices, got.source_indices[1:]))
    windows = [i * 60 // got.frames_decoded for i in got.source_indices]
    assert windows == list(range(60))  # exactly one frame from each window
    shapes = {cv2.imread(str(p)).shape for p in got.image_paths}
    assert shapes == {(1280, 720, 3)}


def test_progress_bar_does_not_change_the_result(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_video(video, textured_frames(9), fps=30)
    quiet = extract_sharpest_frames(video, tmp_path / "a", num_frames=3, progress=False)
    shown = extract_sharpest_frames(video, tmp_path / "b", num_frames=3, progress=True)
    assert shown.source_indices == quiet.source_indices and shown.sharpness == quiet.sharpness
    assert "decode/select" in capsys.readouterr().out
