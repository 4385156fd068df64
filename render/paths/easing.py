"""Speed ramps: time-warp functions of the path parameter t in [0, 1] (monotone, 0 -> 0, 1 -> 1).

``ease-in`` starts slowly, ``ease-out`` ends slowly, ``ease-in-out`` does both (zero speed at the ends:
smoothstep-like Hermite curves). ``strength`` in (0, 1] blends from linear (0) to the full ramp (1).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ...core.errors import ConfigError

Easing = Literal["linear", "ease-in", "ease-out", "ease-in-out"]
EASINGS: tuple[str, ...] = ("linear", "ease-in", "ease-out", "ease-in-out")


def ease(t, kind: Easing = "linear", strength: float = 1.0) -> np.ndarray:
    """Warp path parameters ``t`` ([...] in [0, 1]) by the speed ramp ``kind``."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    if not 0.0 <= float(strength) <= 1.0:
        raise ConfigError(f"easing strength={strength}: expected a value in [0, 1]")
    if kind == "linear":
        warped = t
    elif kind == "ease-in":
        warped = t * t * (2.0 - t)  # slope 0 at t=0, 1 at t=1
    elif kind == "ease-out":
        warped = t * (1.0 + t * (1.0 - t))  # slope 1 at t=0, 0 at t=1
    elif kind == "ease-in-out":
        warped = t * t * (3.0 - 2.0 * t)  # smoothstep: slope 0 at both ends
    else:
        raise ConfigError(f"easing={kind!r}: expected one of {', '.join(EASINGS)}")
    return (1.0 - strength) * t + strength * warped


def frame_parameters(num_frames: int, kind: Easing = "linear", closed: bool = False) -> np.ndarray:  # [F]
    """Eased path parameters of ``num_frames`` frames: t = i / (F - 1) (open path, ends included) or
    i / F (closed loop, the last frame stops one step short of the first)."""
    if num_frames < 1:
        raise ConfigError(f"num_frames={num_frames}: a path needs at least one frame")
    denominator = num_frames if closed else max(num_frames - 1, 1)
    return ease(np.arange(num_frames) / denominator, kind)
