"""Regenerate docs/viewer.png: ``nerfstage view`` on a trained run in headless Chromium, three keyframes laid out
by dragging the camera, a screenshot once the finest progressive level is drawn.

    .venv/bin/python tests/viewer/make_docs_screenshot.py RUN [docs/viewer.png]

(docs/viewer.png was made from the `nerfstage demo` run of the synthetic scene: no third-party images in the repo.) Not a test: it needs a trained run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def start(run: str, port: int, work: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "nerfstage"
    proc = subprocess.Popen([str(exe), "view", run, "--port", str(port), "--max-height", "360", "--device", "cpu",
                             "--camera-path", str(work / "camera_path.json")])
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("nerfstage view exited")
            time.sleep(0.5)


def drag(page, dx: int, dy: int = 0) -> None:
    page.mouse.move(500, 500)
    page.mouse.down()
    page.mouse.move(500 + dx, 500 + dy, steps=10)
    page.mouse.up()
    page.wait_for_timeout(800)


def shoot(page, output: str) -> None:
    page.wait_for_selector("canvas", timeout=60_000)
    page.wait_for_timeout(3000)
    page.add_style_tag(content="[class*=Notification] {display: none !important}")  # the software-WebGL notice
    for dx in (0, 120, 120):
        if dx:
            drag(page, dx)
        page.get_by_role("button", name="Add keyframe").click()
        page.wait_for_timeout(800)
    drag(page, -120, -30)
    page.mouse.wheel(0, 500)
    for _ in range(300):
        status = page.get_by_text("Rendered frames:")
        if status.count() and "level 4/4" in status.inner_text():
            break
        page.wait_for_timeout(1000)
    page.wait_for_timeout(2000)
    page.screenshot(path=output)


def main(run: str, output: str = "docs/viewer.png") -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        proc = start(run, port, Path(work))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"http://127.0.0.1:{port}")
                shoot(page, output)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(*sys.argv[1:])
