"""nerf stage: an Instant-NGP-class radiance field trained on any dataset the capture loader reads.

Public API (imported lazily, so ``import nerfstage.nerf`` loads neither torch extensions nor CUDA code)::

    from nerfstage.nerf import train, evaluate_run, build_config, TrainConfig
    metrics = train("my_dataset", "my_run", build_config("preview", "cpu"))   # RUN/metrics.json too
    metrics = evaluate_run("my_run", save_images="renders")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "train": ".trainer",
    "evaluate_run": ".evaluate",
    "build_config": ".config",
    "preset_config": ".config",
    "load_config": ".config",
    "TrainConfig": ".config",
    "ModelConfig": ".config",
    "DataConfig": ".config",
    "PRESETS": ".config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
