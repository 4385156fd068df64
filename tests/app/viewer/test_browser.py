"""The viewer in a real browser: Debian's headless Chromium (software WebGL) driven by Playwright.

Starts ``nerfstage view`` on the tiny run, waits for a rendered frame, checks from screenshot pixels that the
canvas shows the field (varied colours, and different from the same view with rendering switched off), adds two
keyframes through the panel with a camera drag between them, saves the path and reads it back with the render
stage's reader. With Gaussian splats (``--splats``): the canvas shows them, changes when the camera moves, draws at
an interactive rate measured in the page (requestAnimationFrame callbacks over 2 s), the keyframe editor works on
them, and the "Show" toggle brings the field's progressive render. The screenshots are kept in
``tests/viewer/artifacts/`` (ignored by git).

Chromium comes from the test set-up (``make test`` installs Debian's ``chromium`` when it is missing); without it
the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
VIEWPORT = {"width": 1280, "height": 720}
SCENE = (slice(160, 680), slice(330, 920))  # rows, cols of the canvas away from the panel and notifications


def need_browser() -> None:
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} (apt-get install chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " -- required under CI=true")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_viewer(run_dir: Path, tmp_path: Path, *extra: str):
    port = free_port()
    exe = shutil.which("nerfstage", path=str(Path(sys.executable).parent)) or "nerfstage"
    log = open(tmp_path / "viewer.log", "w")
    proc = subprocess.Popen([exe, "view", str(run_dir), "--port", str(port), "--max-height", "128", "--device",
                             "cpu", "--camera-path", str(tmp_path / "paths" / "camera_path.json"), *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=1)
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"nerfstage view did not start: {(tmp_path / 'viewer.log').read_text()[-2000:]}")
            time.sleep(0.3)


def scene_pixels(page, name: str) -> np.ndarray:
    import cv2

    ARTIFACTS.mkdir(exist_ok=True)
    file = ARTIFACTS / name
    page.screenshot(path=str(file))
    print(f"screenshot: {file}")
    return cv2.imread(str(file), cv2.IMREAD_COLOR)[SCENE].astype(np.float32)


def wait_for_frames(page, more_than: int, timeout_s: float = 120.0) -> None:
    """Wait until the status shows a full-resolution frame numbered above ``more_than``."""
    deadline = time.monotonic() + timeout_s
    status = page.get_by_text("Rendered frames:")
    while time.monotonic() < deadline:
        text = status.inner_text() if status.count() else ""
        if "level 2/2" in text and int(text.split(":")[1].split("(")[0]) > more_than:
            page.wait_for_timeout(1500)  # let the browser draw the new background
            return
        page.wait_for_timeout(250)
    pytest.fail(f"no full-resolution frame rendered within {timeout_s} s (status {text!r})")


def frames_count(page) -> int:
    text = page.get_by_text("Rendered frames:").inner_text()
    return int(text.split(":")[1].split("(")[0])


@pytest.mark.slow
def test_viewer_in_headless_chromium(tiny_run, tmp_path):
    need_browser()
    from playwright.sync_api import sync_playwright

    from nerfstage.render.paths import read_camera_path

    proc, port = start_viewer(tiny_run.run_dir, tmp_path)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("canvas", timeout=60_000)
            wait_for_frames(page, 0)
            rendered = scene_pixels(page, "viewer_rendered.png")
            page.get_by_text("Live render", exact=True).click()
            page.wait_for_timeout(2000)
            plain = scene_pixels(page, "viewer_no_render.png")
            assert rendered.std(axis=(0, 1)).mean() > 8.0, "rendered canvas is (nearly) one flat colour"
            difference = np.abs(rendered - plain).mean()
            assert difference > 8.0, f"canvas with rendering differs from without by only {difference:.1f} / 255"

            page.get_by_text("Live render", exact=True).click()
            page.get_by_role("button", name="Add keyframe").click()
            page.mouse.move(600, 420)
            page.mouse.down()
            page.mouse.move(760, 400, steps=12)
            page.mouse.up()
            page.wait_for_timeout(1000)
            page.get_by_role("button", name="Add keyframe").click()
            page.get_by_text("2 keyframes,").wait_for(timeout=30_000)
            page.get_by_role("button", name="Save path").click()
            saved = tmp_path / "paths" / "camera_path.json"
            deadline = time.monotonic() + 30
            while not saved.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            scene_pixels(page, "viewer_keyframes.png")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    doc = json.loads(saved.read_text())
    path = read_camera_path(saved)
    assert len(doc["keyframes"]) == 2 and len(path.keyframes) == 2
    assert len(path) == int(path.fps * path.duration) == 60  # one 2 s transition at 30 fps
    moved = np.linalg.norm(path.keyframes[0].world_from_cam - path.keyframes[1].world_from_cam)
    assert moved > 1e-3, "the drag between the two keyframes did not move the camera"
    assert np.isfinite(path.world_from_cams).all() and 1.0 < path.fov_y_deg.min() < 170.0


FPS_JS = """() => new Promise((resolve) => {
  let frames = 0;
  const start = performance.now();
  function tick(now) {
    frames += 1;
    if (now - start < 2000) { requestAnimationFrame(tick); } else { resolve(frames * 1000 / (now - start)); }
  }
  requestAnimationFrame(tick);
})"""
"""Frames the page draws per second: requestAnimationFrame callbacks over 2 s (the viewer's canvas redraws in
each one, so a slow splat draw lowers the count)."""


def drag(page, x0: int, y0: int, x1: int, y1: int) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


@pytest.mark.slow
def test_viewer_shows_splats_in_real_time(tiny_run, tmp_path):
    need_browser()
    from playwright.sync_api import sync_playwright

    from nerfstage.export.splats_init import SplatInitOptions, splats_from_run
    from nerfstage.nerf.run import load_run
    from nerfstage.render.splats.io import write_splats

    # the tiny run's splats as placed from the field (what the viewer draws matters here, not their quality)
    splats = splats_from_run(load_run(tiny_run.run_dir, device="cpu"), SplatInitOptions(max_splats=4000))
    write_splats(tmp_path / "scene.ply", splats)
    proc, port = start_viewer(tiny_run.run_dir, tmp_path, "--splats", str(tmp_path / "scene.ply"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("canvas", timeout=60_000)
            page.get_by_text(f"Splats: {splats.num_splats} Gaussians").wait_for(timeout=60_000)
            page.wait_for_timeout(4000)  # the splats are sorted and uploaded by the page's worker
            first = scene_pixels(page, "viewer_splats.png")
            fps = page.evaluate(FPS_JS)
            print(f"splats {splats.num_splats}: {fps:.1f} frames per second in the page")
            drag(page, 600, 420, 760, 400)
            page.wait_for_timeout(1500)
            moved = scene_pixels(page, "viewer_splats_moved.png")
            assert first.std(axis=(0, 1)).mean() > 8.0, "splat canvas is (nearly) one flat colour"
            change = np.abs(moved - first).mean()
            assert change > 4.0, f"moving the camera changed the splat canvas by only {change:.1f} / 255"
            assert fps >= 10.0, f"{fps:.1f} frames per second with splats"

            page.get_by_role("button", name="Add keyframe").click()
            drag(page, 600, 420, 700, 440)
            page.wait_for_timeout(1000)
            page.get_by_role("button", name="Add keyframe").click()
            page.get_by_text("2 keyframes,").wait_for(timeout=30_000)

            page.get_by_role("combobox", name="Show").click()
            page.get_by_role("option", name="NeRF (final look)").click()
            wait_for_frames(page, 0)
            nerf = scene_pixels(page, "viewer_splats_nerf.png")
            assert nerf.std(axis=(0, 1)).mean() > 8.0
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
