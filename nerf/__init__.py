"""nerf stage: an Instant-NGP-class radiance field trained on any dataset the capture loader reads.

Public API (imported lazily, so ``import nerfstage.nerf`` loads neither torch extensions nor CUDA code)::

    from nerfstage.nerf import train, evaluate_run, build_config, TrainConfig
    metrics = train("my_dataset", "my_run", build_config("preview", "cpu"))   # RUN/metrics.json too
    metrics = evaluate_run("my_run", save_images="renders")
"""

from __future__ import annotations

from ..core.lazy import lazy_exports

_LAZY = {
    "train": ".trainer",
    "evaluate_run": ".evaluate",
    "build_config": ".config",
    "preset_config": ".config",
    "load_config": ".config",
    "TrainConfig": ".config",
    "ModelConfig": ".config",
    "DataConfig": ".config",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, globals())
