"""nerfstudio viewer ``camera_path.json``: read, validate, and write byte-compatibly.

Format (nerfstudio >= 1.0, ``nerfstudio/viewer/render_panel.py`` writes it with a plain ``json.dump`` - one line,
``", "`` and ``": "`` separators, no trailing newline; ``nerfstudio/cameras/camera_paths.py`` reads it)::

    {"default_fov": deg, ["default_time": t,] "default_transition_sec": s,
     "keyframes": [{"matrix": [16 row-major], "fov": deg, "aspect": w/h, "override_transition_enabled": bool,
                    "override_transition_sec": s | null[, "render_time": t, "override_time_enabled": bool]}],
     "camera_type": "perspective" | "fisheye" | "equirectangular", "render_height": H, "render_width": W,
     "fps": f, "seconds": s, "is_cycle": bool, "smoothness_value": tension,
     "camera_path": [{"camera_to_world": [16 row-major], "fov": vertical deg, "aspect": w/h[, "render_time": t]}]
     [, "crop": {...}]}

Matrices are camera-to-world with OpenGL camera axes in the normalised scene frame. ``ns-render`` uses only
``camera_path``, ``render_width/height``, ``camera_type`` and ``seconds`` (video fps = frames / seconds).

Byte stability: a path read from a file remembers that document (``CameraPath.source``); writing it again keeps
the file's key order, unknown keys and number spellings (``30`` vs ``30.0``, nested vs flat matrices) for every
value that did not change, so read -> write reproduces a nerfstudio file byte for byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from ..writers import atomic_output
from .base import CAMERA_TYPES, CameraPath, Keyframe

_FRAME_KEYS = ("camera_to_world", "fov", "aspect")
_KEYFRAME_KEYS = ("matrix", "fov", "aspect", "override_transition_enabled", "override_transition_sec")
_TOP_KEYS = ("default_fov", "default_transition_sec", "keyframes", "camera_type", "render_height", "render_width",
             "fps", "seconds", "is_cycle", "smoothness_value", "camera_path")


def read_camera_path(path: Path) -> CameraPath:
    """Read and validate a camera_path.json; ConfigError naming the file and field when it is unusable."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: camera path file not found") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON camera path ({exc})") from exc
    return parse_camera_path(doc, str(path))


def parse_camera_path(doc: Any, name: str = "camera_path.json") -> CameraPath:
    """A CameraPath from a parsed camera_path.json document (see the module docstring)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{name}: expected a JSON object with 'camera_path', 'render_width', 'render_height'")
    camera_type = doc.get("camera_type", "perspective")
    if camera_type not in CAMERA_TYPES:
        raise ConfigError(f"{name}: camera_type={camera_type!r}; expected one of {', '.join(CAMERA_TYPES)}")
    width, height = (_positive(doc, key, name, integer=True) for key in ("render_width", "render_height"))
    frames = doc.get("camera_path")
    if not isinstance(frames, list) or not frames:
        what = "is missing" if frames is None else "has no frames"
        raise ConfigError(f"{name}: 'camera_path' {what}; expected a non-empty list of camera_to_world frames")
    default_fov = _number(doc, "default_fov", name, None)
    fov_fallback = default_fov if default_fov is not None else 90.0
    poses = np.stack([_matrix(f, "camera_to_world", f"{name}: camera_path[{i}]") for i, f in enumerate(frames)])
    fovs = np.array([_frame_fov(f, camera_type, fov_fallback, f"{name}: camera_path[{i}]")
                     for i, f in enumerate(frames)])
    seconds = _positive(doc, "seconds", name) if "seconds" in doc else None
    fps = _positive(doc, "fps", name) if "fps" in doc else None
    if fps is None and seconds is None:
        raise ConfigError(f"{name}: needs 'seconds' (and/or 'fps') to time the frames")
    keyframes = _keyframes(doc.get("keyframes", []), name, fov_fallback)
    extra = {k: v for k, v in doc.items() if k not in _TOP_KEYS}
    if not keyframes and doc.get("keyframes"):
        extra["keyframes"] = doc["keyframes"]  # an older viewer's keyframes, kept verbatim
    return CameraPath(
        poses, fovs, width, height, fps if fps is not None else len(frames) / seconds, camera_type, seconds=seconds,
        keyframes=keyframes, default_fov_deg=default_fov,
        default_transition_sec=float(_number(doc, "default_transition_sec", name, 2.0)),
        is_cycle=bool(doc.get("is_cycle", False)), smoothness=float(_number(doc, "smoothness_value", name, 0.0)),
        aspects=np.array([float(f.get("aspect", width / height)) for f in frames]),
        extra=extra,
        frame_extra=[{k: v for k, v in f.items() if k not in _FRAME_KEYS} for f in frames], source=doc,
    )


def camera_path_to_json(path: CameraPath) -> dict[str, Any]:
    """The camera_path.json document of a path, in nerfstudio's key order (or its source file's)."""
    source = path.source or {}
    default_fov = path.default_fov_deg if path.default_fov_deg is not None else float(path.fov_y_deg[0])
    doc: dict[str, Any] = {"default_fov": float(default_fov)}
    if "default_time" in path.extra:
        doc["default_time"] = path.extra["default_time"]
    doc["default_transition_sec"] = float(path.default_transition_sec)
    doc["keyframes"] = _keyframes_json(path, source.get("keyframes"))
    doc.update(camera_type=path.camera_type, render_height=int(path.height), render_width=int(path.width),
               fps=float(path.fps), seconds=float(path.duration), is_cycle=bool(path.is_cycle),
               smoothness_value=float(path.smoothness))
    doc["camera_path"] = _frames_json(path, source.get("camera_path"))
    doc.update({k: v for k, v in path.extra.items() if k not in doc and k != "keyframes"})
    return _merge(doc, source)


def dumps_camera_path(path: CameraPath) -> str:
    """The file text: ``json.dumps`` with the default separators, as nerfstudio's ``json.dump``."""
    return json.dumps(camera_path_to_json(path))


def write_camera_path(file: Path, path: CameraPath, overwrite: bool = False) -> Path:
    """Write ``path`` as a nerfstudio camera_path.json, atomically."""
    text = dumps_camera_path(path)
    with atomic_output(Path(file), overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(file)


def _keyframes_json(path: CameraPath, source: Any) -> Any:
    if not path.keyframes and "keyframes" in path.extra:
        return path.extra["keyframes"]  # an older viewer's keyframes we do not interpret: kept verbatim
    count = len(path.keyframes)
    sources = source if isinstance(source, list) and len(source) == count else [None] * count
    out = []
    for keyframe, raw in zip(path.keyframes, sources, strict=True):
        entry = {"matrix": np.asarray(keyframe.world_from_cam, dtype=np.float64).reshape(16).tolist(),
                 "fov": float(keyframe.fov_deg), "aspect": float(keyframe.aspect),
                 "override_transition_enabled": bool(keyframe.override_transition_enabled),
                 "override_transition_sec": keyframe.override_transition_sec, **keyframe.extra}
        out.append(_merge(entry, raw))
    return out


def _frames_json(path: CameraPath, source: Any) -> list[dict[str, Any]]:
    sources = source if isinstance(source, list) and len(source) == len(path) else [None] * len(path)
    aspects = path.aspects if path.aspects is not None and len(path.aspects) == len(path) else None
    extras = path.frame_extra if path.frame_extra is not None and len(path.frame_extra) == len(path) else None
    out = []
    for i, raw in enumerate(sources):
        entry = {"camera_to_world": path.world_from_cams[i].reshape(16).tolist(), "fov": float(path.fov_y_deg[i]),
                 "aspect": float(aspects[i]) if aspects is not None else path.width / path.height}
        entry.update(extras[i] if extras is not None else {})
        out.append(_merge(entry, raw))
    return out


def _merge(generated: dict[str, Any], source: Any) -> dict[str, Any]:
    """``generated`` in the source's key order, with the source's spelling of every unchanged value."""
    if not isinstance(source, dict):
        return generated
    out = {key: _keep(raw, generated[key]) for key, raw in source.items() if key in generated}
    out.update({key: value for key, value in generated.items() if key not in out})
    return out


def _keep(raw: Any, value: Any) -> Any:
    """``raw`` when it holds the same value as ``value`` (so ``30`` stays ``30``), else ``value``."""
    if isinstance(raw, bool) or isinstance(value, bool):
        return raw if raw is value else value
    if isinstance(raw, (int, float)) and isinstance(value, (int, float)):
        return raw if raw == value else value
    if isinstance(raw, list) and isinstance(value, list) and len(value) == 16:
        try:
            same = np.array_equal(np.asarray(raw, dtype=np.float64).reshape(16), np.asarray(value))
        except (ValueError, TypeError):
            same = False
        return raw if same else value
    return raw if raw == value else value


def _number(doc: dict, key: str, name: str, default: float | None) -> float | None:
    value = doc.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: '{key}' must be a finite number, got {value!r}")
    return value


def _positive(doc: dict, key: str, name: str, integer: bool = False):
    if key not in doc:
        raise ConfigError(f"{name}: missing field '{key}'")
    value = _number(doc, key, name, None)
    if value is None or value <= 0 or integer and float(value) != int(value):
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name}: '{key}' must be {kind}, got {doc[key]!r}")
    return int(value) if integer else value


def _matrix(entry: Any, key: str, where: str) -> np.ndarray:  # -> [4, 4]
    if not isinstance(entry, dict) or key not in entry:
        raise ConfigError(f"{where}: missing field '{key}' (16 numbers, row-major 4x4 camera-to-world)")
    try:
        matrix = np.asarray(entry[key], dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}.{key}: expected 16 numbers (row-major 4x4), got {entry[key]!r:.80}") from exc
    if matrix.size != 16 or matrix.shape not in ((16,), (4, 4)):
        raise ConfigError(f"{where}.{key}: expected a 4x4 matrix (16 numbers), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"{where}.{key}: holds NaN or infinite values")
    return matrix.reshape(4, 4)


def _frame_fov(entry: dict, camera_type: str, fallback: float, where: str) -> float:
    if "fov" not in entry:
        if camera_type == "equirectangular":  # nerfstudio ignores fov for equirectangular frames
            return fallback
        raise ConfigError(f"{where}: missing field 'fov' (vertical field of view, degrees)")
    fov = entry["fov"]
    if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0 < fov < 180:
        raise ConfigError(f"{where}.fov: expected degrees in (0, 180), got {fov!r}")
    return float(fov)


def _keyframes(items: Any, name: str, fov_fallback: float) -> list[Keyframe]:
    if not isinstance(items, list):
        raise ConfigError(f"{name}: 'keyframes' must be a list")
    if any(isinstance(k, dict) and isinstance(k.get("matrix"), str) for k in items):
        return []  # an older viewer's format (matrix as a string): kept verbatim in `extra`, not interpreted
    out = []
    for i, item in enumerate(items):
        where = f"{name}: keyframes[{i}]"
        matrix = _matrix(item, "matrix", where)
        fov = _frame_fov(item, "perspective", fov_fallback, where) if "fov" in item else fov_fallback
        transition = item.get("override_transition_sec")
        out.append(Keyframe(matrix, fov, float(item.get("aspect", 16 / 9)),
                            bool(item.get("override_transition_enabled", False)),
                            None if transition is None else float(transition),
                            {k: v for k, v in item.items() if k not in _KEYFRAME_KEYS}))
    return out
