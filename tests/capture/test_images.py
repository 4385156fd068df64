"""Photo-folder ingestion: natural order, EXIF orientation, mixed sizes, resizing, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from nerfstage.capture.images import import_images, list_images, natural_key, read_image
from nerfstage.core.errors import DatasetError


def marked_image(width: int, height: int, colour: tuple[int, int, int]) -> np.ndarray:
    """RGB image of one colour with a white block in the top-left corner and a black one bottom-right."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    image[: height // 4, : width // 4] = 255
    image[-height // 4 :, -width // 4 :] = 0
    return image


def save(path: Path, rgb: np.ndarray, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix in (".jpg", ".JPG") else {}))
    return path


def test_natural_order_mixed_sizes_and_formats(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    specs = {  # name -> (width, height, colour)
        "img10.jpg": (300, 200, (200, 30, 30)),
        "IMG1.JPG": (1200, 900, (30, 200, 30)),
        "img2.png": (640, 480, (30, 30, 200)),
        "img3.webp": (480, 640, (200, 200, 30)),
        "img20.TIFF": (500, 500, (30, 200, 200)),
    }
    for name, (w, h, colour) in specs.items():
        save(src / name, marked_image(w, h, colour))
    (src / "notes.txt").write_text("not a photo")
    (src / ".hidden.jpg").write_bytes(b"AppleDouble junk")

    got = import_images(src, tmp_path / "images", max_size=400, progress=False)

    order = ["IMG1.JPG", "img2.png", "img3.webp", "img10.jpg", "img20.TIFF"]
    assert [p.name for p in got.source_paths] == order
    assert [p.name for p in got.image_paths] == [f"frame_{k:05d}.jpg" for k in range(1, 6)]
    assert got.name_map == {name: f"frame_{k:05d}.jpg" for k, name in enumerate(order, start=1)}
    assert got.size_per_image == [(400, 300), (400, 300), (300, 400), (300, 200), (400, 400)]
    assert sorted(p.name for p in got.skipped) == [".hidden.jpg", "notes.txt"]
    assert got.frames_selected == 5 and len(got.warnings) == 1 and "4 different sizes" in got.warnings[0]
    for path, name in zip(got.image_paths, order):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert image.shape[1::-1] == got.size_per_image[order.index(name)]
        h, w = image.shape[:2]
        centre = image[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - specs[name][2]).max() < 6  # the right photo landed under the right name
        assert image[:5, :5].min() > 240 and image[-5:, -5:].max() < 15  # upright, not mirrored


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])  # .tif: decoded by Pillow
def test_exif_orientation_matches_pillow(tmp_path, orientation, suffix):
    path = save(tmp_path / f"o{orientation}{suffix}", marked_image(90, 60, (120, 60, 30)), orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    ours = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)
    assert ours.shape == expected.shape == ((90, 60, 3) if orientation >= 5 else (60, 90, 3))
    assert np.abs(ours.astype(int) - expected).mean() < 1.0


def test_phone_photo_taken_in_portrait_comes_out_portrait(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):  # stored landscape with orientation 6: the viewer turns it 90 degrees clockwise
        save(src / f"IMG_{i}.jpg", marked_image(160, 120, (90, 90, 90)), orientation=6)
    got = import_images(src, tmp_path / "images", progress=False)
    image = cv2.imread(str(got.image_paths[0]))
    assert got.size_per_image == [(120, 160)] * 2 and not got.warnings
    assert image[:5, -5:].min() > 240  # the white top-left block is now top-right
    assert image[-5:, :5].max() < 15  # the black bottom-right block is now bottom-left


def test_sixteen_bit_png_and_never_upscales(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    cv2.imwrite(str(src / "a.png"), np.dstack([ramp] * 3))
    cv2.imwrite(str(src / "b.png"), np.dstack([ramp] * 3))
    got = import_images(src, tmp_path / "images", max_size=1600, progress=False)
    image = cv2.imread(str(got.image_paths[0]), cv2.IMREAD_GRAYSCALE)
    assert got.size_per_image == [(64, 48), (64, 48)]
    assert np.abs(image[24].astype(int) - (ramp[24] >> 8)).max() <= 4


def test_natural_key():
    names = ["b10.jpg", "B2.jpg", "a.jpg", "b1.jpg", "a10.png", "a9.png"]
    assert sorted(names, key=natural_key) == ["a.jpg", "a9.png", "a10.png", "b1.jpg", "B2.jpg", "b10.jpg"]


# ---------------------------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="nowhere.*does not exist"):
        import_images(tmp_path / "nowhere", tmp_path / "images", progress=False)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match="no images found"):
        list_images(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    save(src / "good.jpg", marked_image(64, 48, (10, 20, 30)))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg.*cannot read"):
        import_images(src, tmp_path / "images", progress=False)


def test_single_image(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    save(src / "only.png", marked_image(64, 48, (10, 20, 30)))
    with pytest.raises(DatasetError, match="only 1 photo"):
        import_images(src, tmp_path / "images", progress=False)


def test_camera_exif_is_kept_and_orientation_reset(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):
        exif = Image.Exif()
        exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Apple", "iPhone 12"  # orientation, make, model
        sub = exif.get_ifd(0x8769)
        sub[0xA405], sub[0xA002], sub[0xA003] = 26, 640, 480  # focal length (35 mm equivalent), pixel size
        Image.fromarray(marked_image(640, 480, (90, 90, 90))).save(src / f"IMG_{i}.jpg", exif=exif.tobytes())
    got = import_images(src, tmp_path / "images", max_size=320, progress=False)
    assert got.size_per_image == [(240, 320)] * 2
    with Image.open(got.image_paths[0]) as written:
        exif = written.getexif()
        sub = exif.get_ifd(0x8769)
        assert (exif[0x0112], exif[0x010F], exif[0x0110]) == (1, "Apple", "iPhone 12")
        assert (sub[0xA405], sub[0xA002], sub[0xA003]) == (26, 240, 320)
    upright = cv2.imread(str(got.image_paths[0]))  # a reader that honours EXIF must not turn it again
    assert upright.shape == (320, 240, 3) and upright[:5, -5:].min() > 240
