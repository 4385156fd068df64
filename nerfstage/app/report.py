"""WORKDIR/report.html of ``nerfstage run`` / ``demo``: one self-contained page (thumbnails embedded as data URIs)
with the stage table, the training metrics, the capture report and relative links to every file.

Thumbnails are also kept as PNGs in WORKDIR/thumbnails/ (a middle frame of each MP4, the latlong plate
tone-mapped to sRGB, a flat-shaded preview of the mesh, the Gaussian splats' centres in their diffuse colour); each
is rebuilt only when missing or older than its source.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..export.gltf import read_mesh
from ..render.splats.io import read_splats
from ..render.splats.transform import Y_UP_FROM_Z_UP
from ..render.writers import linear_to_srgb, read_exr, to_srgb8
from .chain_checks import glb_faces, video_frame, video_info
from .chain_truth import TRUTH_DIR

THUMBS = "thumbnails"
THUMB_WIDTH = 480
TRUTH_VIDEOS = ("orbit", "dolly_zoom")


def write_report(workdir: Path, summary: dict[str, Any]) -> Path:
    """Write WORKDIR/report.html from the chain's summary; returns its path. Thumbnail PNGs are added to
    ``summary["files"]``."""
    workdir = Path(workdir)
    thumbs = _thumbnails(workdir, summary)
    summary["files"].extend(p.relative_to(workdir).as_posix() for _, p in thumbs)
    truth_thumbs = _truth_thumbnails(workdir, summary)
    summary["files"].extend(p.relative_to(workdir).as_posix() for _, p in truth_thumbs)
    sections = [_title(summary), _truth_section(truth_thumbs, workdir, summary), _figure_row(thumbs, workdir),
                _stage_table(summary), _metrics_table(summary), _capture_section(workdir, summary),
                _file_list(summary)]
    page = "\n".join([_HEAD, *sections, "</body></html>"])
    path = workdir / "report.html"
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


_HEAD = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>nerfstage report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{display:inline-block;margin:0 1em 1em 0}
img{max-width:964px;border:1px solid #ccc}code{background:#f4f4f4}</style></head><body>"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _title(summary: dict) -> str:
    opts = summary["options"]
    source = summary.get("input") or "built-in synthetic capture (nerfstage demo)"
    return (f"<h1>nerfstage report</h1><p>Input: <code>{_e(source)}</code><br>Work folder: "
            f"<code>{_e(summary['workdir'])}</code><br>Preset: {_e(opts['preset'])}; total "
            f"{_e(_fmt(summary.get('seconds', 0.0)))} s</p>")


def _stage_table(summary: dict) -> str:
    rows = []
    for name, stage in summary["stages"].items():
        state = "kept (already valid)" if stage["skipped"] else "ran"
        figures = {k: v for k, v in stage.items() if k not in ("skipped", "seconds", "files", "warnings")}
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(state)}</td><td>{_e(_fmt(stage['seconds']))}</td>"
                    f"<td>{_e(_fmt(figures))}</td></tr>")
    return ("<h2>Stages</h2><table><tr><th>stage</th><th>state</th><th>seconds</th><th>figures</th></tr>"
            + "".join(rows) + "</table>")


def _metrics_table(summary: dict) -> str:
    train = summary["stages"].get("train", {})
    keys = ("psnr", "ssim", "split", "eval_views", "steps", "train_seconds", "device")
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(train[k]))}</td></tr>" for k in keys if k in train)
    return f"<h2>Training metrics (held-out views)</h2><table>{rows}</table>"


def _capture_section(workdir: Path, summary: dict) -> str:
    try:
        report = json.loads((workdir / "dataset" / "capture_report.json").read_text())
    except (OSError, ValueError):
        return "<h2>Capture report</h2><p>capture_report.json is missing.</p>"
    keys = ("input", "input_kind", "frames_decoded", "frames_selected", "frames_registered",
            "mean_reprojection_error_px", "seconds")
    rows = [f"<tr><th>{_e(k)}</th><td>{_e(_fmt(report[k]))}</td></tr>" for k in keys if k in report]
    capture = summary["stages"].get("capture", {})
    for key in ("mean_rotation_error_deg", "mean_centre_error_fraction"):
        if key in capture:
            rows.append(f"<tr><th>{_e(key)} (vs. true poses)</th><td>{_e(_fmt(capture[key]))}</td></tr>")
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.get("warnings", [])) or "<li>none</li>"
    return f"<h2>Capture report</h2><table>{''.join(rows)}</table><p>Warnings:</p><ul>{warnings}</ul>"


def _file_list(summary: dict) -> str:
    items = "".join(f'<li><a href="{_e(f)}">{_e(f)}</a></li>' for f in summary["files"])
    return f"<h2>Files</h2><ul>{items}<li><a href=\"report.html\">report.html</a></li></ul>"


def _figures(thumbs: list[tuple[str, Path]], workdir: Path) -> str:
    figures = []
    for caption, path in thumbs:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        link = path.relative_to(workdir).as_posix()
        figures.append(f'<figure><a href="{_e(link)}"><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
                       f"</a><figcaption>{_e(caption)}</figcaption></figure>")
    return "".join(figures)


def _figure_row(thumbs: list[tuple[str, Path]], workdir: Path) -> str:
    return "<h2>Previews</h2>" + (_figures(thumbs, workdir) or "<p>none</p>")


def _truth_section(thumbs: list[tuple[str, Path]], workdir: Path, summary: dict) -> str:
    """Demo only: novel-path PSNR / SSIM of each video against the synthetic ground truth, and its thumbnails."""
    novel = summary["stages"].get("render", {}).get("novel_path")
    if not novel:
        return ""
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{novel[name]['psnr']:.2f}</td><td>{novel[name]['ssim']:.4f}</td>"
                   f"<td>{novel[name]['min_psnr']:.2f}</td><td>{novel[name]['frames']}</td></tr>"
                   for name in TRUTH_VIDEOS if name in novel)
    return ("<h2>Novel paths vs ground truth</h2><p>The synthetic scene rendered exactly from the cameras of each "
            "video, compared with the decoded video frame by frame (left: ground truth, right: render, middle "
            f"frame). Mean PSNR {novel['mean_psnr']:.2f} dB, SSIM {novel['mean_ssim']:.4f}.</p><table><tr><th>video"
            "</th><th>PSNR (dB)</th><th>SSIM</th><th>worst frame PSNR (dB)</th><th>frames</th></tr>"
            + rows + "</table>" + _figures(thumbs, workdir))


# --- thumbnails -------------------------------------------------------------------------------------------------

def _thumbnails(workdir: Path, summary: dict) -> list[tuple[str, Path]]:
    """(caption, PNG) of every preview that could be made."""
    sources = [("orbit.mp4 (middle frame)", workdir / "renders" / "orbit.mp4", _video_thumb),
               ("dolly_zoom.mp4 (middle frame)", workdir / "renders" / "dolly_zoom.mp4", _video_thumb),
               ("latlong plate (tone-mapped)", workdir / "export" / "plate_latlong.exr", _plate_thumb),
               ("mesh.glb (vertex colours)", workdir / "export" / "mesh.glb", _mesh_thumb)]
    for name in summary["stages"].get("splats", {}).get("files", []):
        sources.append((f"{Path(name).name} (splat centres, diffuse colour)", workdir / name, _splats_thumb))
    out = []
    for caption, source, make in sources:
        if not source.is_file():
            continue
        thumb = workdir / THUMBS / f"{source.stem}.png"
        if not thumb.is_file() or thumb.stat().st_mtime < source.stat().st_mtime:
            image = make(source)
            if image is None:
                continue
            _write_png(thumb, image)
        out.append((caption, thumb))
    return out


def _truth_thumbnails(workdir: Path, summary: dict) -> list[tuple[str, Path]]:
    """(caption, PNG) of each video's middle frame beside its ground truth: ground truth | render."""
    novel = summary["stages"].get("render", {}).get("novel_path") or {}
    out = []
    for name in TRUTH_VIDEOS:
        render, truth = workdir / "renders" / f"{name}.mp4", workdir / "renders" / TRUTH_DIR / f"{name}.mp4"
        if name not in novel or not render.is_file() or not truth.is_file():
            continue
        thumb = workdir / THUMBS / f"{name}_vs_truth.png"
        newest = max(render.stat().st_mtime, truth.stat().st_mtime)
        if not thumb.is_file() or thumb.stat().st_mtime < newest:
            pair = [_video_thumb(truth, THUMB_WIDTH // 2 * 2), _video_thumb(render, THUMB_WIDTH // 2 * 2)]
            if any(p is None for p in pair) or pair[0].shape != pair[1].shape:
                continue
            gap = np.full((pair[0].shape[0], 4, 3), 255, np.uint8)
            _write_png(thumb, np.concatenate([pair[0], gap, pair[1]], axis=1))
        figures = novel[name]
        out.append((f"{name}: ground truth | render, PSNR {figures['psnr']:.2f} dB, SSIM {figures['ssim']:.3f}",
                    thumb))
    return out


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if ok:
        path.write_bytes(data.tobytes())


def _resize(rgb: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    if rgb.shape[1] <= width:
        return rgb
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def _video_thumb(path: Path, width: int = THUMB_WIDTH) -> np.ndarray | None:
    info = video_info(path)
    frame = video_frame(path, info["frames"] // 2) if info else None
    return None if frame is None else _resize(frame, width)


def _plate_thumb(path: Path) -> np.ndarray | None:
    try:
        channels, _ = read_exr(path)
        linear = np.stack([channels[c] for c in ("R", "G", "B")], axis=-1).astype(np.float32)  # [H, W, 3]
    except Exception:  # noqa: BLE001 - a damaged plate just has no preview
        return None
    return to_srgb8(_resize(linear))


def _mesh_thumb(path: Path, size: int = 360) -> np.ndarray | None:
    """Flat-shaded orthographic view of the mesh (painter's algorithm, vertex colours times a headlight's cosine),
    seen from the front and above (file Y-up). About 2 s per 100 k faces."""
    if glb_faces(path) is None:
        return None


    mesh = read_mesh(path)
    view = _view_points(np.asarray(mesh.vertices, dtype=np.float64))  # [V, 3] x right, y up, z to the viewer
    faces = np.asarray(mesh.faces)  # [F, 3]
    colors = _vertex_rgb(mesh)[faces].mean(axis=1)  # [F, 3]
    normals = np.cross(view[faces[:, 1]] - view[faces[:, 0]], view[faces[:, 2]] - view[faces[:, 0]])  # [F, 3]
    shade = np.abs(normals[:, 2]) / np.maximum(np.linalg.norm(normals, axis=1), 1e-12)
    shaded = np.clip(colors * (0.25 + 0.75 * shade[:, None]), 0, 255).astype(np.uint8)  # [F, 3]
    extent = max(np.ptp(view[:, 0]), np.ptp(view[:, 1]), 1e-9)
    pixels = np.stack([(view[:, 0] / extent + 0.5) * (size - 1), (0.5 - view[:, 1] / extent) * (size - 1)], -1)
    pixels = np.round(pixels * 4).astype(np.int32)  # [V, 2] with 2 fractional bits for cv2's shift
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    for f in np.argsort(view[faces].mean(axis=1)[:, 2]):  # far faces first, nearer ones paint over them
        cv2.fillConvexPoly(image, pixels[faces[f]], shaded[f].tolist(), lineType=cv2.LINE_AA, shift=2)
    return image


def _splats_thumb(path: Path, size: int = 360) -> np.ndarray | None:
    """Orthographic view of the splat centres (opacity >= 0.3) as dots in their diffuse colour, far ones first,
    seen from the same side as the mesh preview."""
    try:
        splats = read_splats(path)
    except Exception:  # noqa: BLE001 - a damaged file just has no preview
        return None
    keep = (splats.opacity_logits > -0.85).numpy()  # sigmoid(-0.85) = 0.3
    points = splats.means.double().numpy()[keep] @ Y_UP_FROM_Z_UP.T  # file axes of the mesh preview (Y-up)
    if len(points) == 0:
        return None
    colours = np.clip(splats.sh[:, 0, :].double().numpy()[keep] * 0.28209479177387814 + 0.5, 0, 1) * 255.0
    view = _view_points(points)
    extent = max(np.ptp(view[:, 0]), np.ptp(view[:, 1]), 1e-9)
    pixels = np.stack([(view[:, 0] / extent + 0.5) * (size - 1), (0.5 - view[:, 1] / extent) * (size - 1)], -1)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    for i in np.argsort(view[:, 2]):  # far splats first
        cv2.circle(image, (int(pixels[i, 0]), int(pixels[i, 1])), 2, colours[i].tolist(), -1, lineType=cv2.LINE_AA)
    return image


def _view_points(points: np.ndarray) -> np.ndarray:  # [V, 3] -> [V, 3]
    yaw, pitch = np.deg2rad(30.0), np.deg2rad(25.0)
    rot_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    view = points @ (rot_x @ rot_y).T
    return view - (view.min(axis=0) + view.max(axis=0)) / 2.0


def _vertex_rgb(mesh) -> np.ndarray:  # [V, 3] float 0..255, sRGB-encoded
    """Vertex colours for display: glTF stores them scene-linear, so they are sRGB-encoded here."""
    colors = getattr(mesh.visual, "vertex_colors", None)
    if colors is None or len(colors) != len(mesh.vertices):
        return np.full((len(mesh.vertices), 3), 180.0)
    return 255.0 * linear_to_srgb(np.asarray(colors, dtype=np.float64)[:, :3] / 255.0)
