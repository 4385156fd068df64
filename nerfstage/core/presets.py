"""The presets of every stage, in one table: ``PRESETS[preset][stage]`` holds field overrides of that stage's options.

Plain data (no torch, no dataclass imports), so the CLI reads the names and every stage reads its part:

* ``"capture"``: fields of ``nerfstage.capture.pipeline.CaptureOptions`` (the chain's ``frames`` / ``max_size``).
* ``"train"``: one set per device kind (``"cpu"``, ``"cuda"``) of ``nerfstage.nerf.config.TrainConfig`` fields
  (nested dicts for ``model`` / ``data`` / ``model.encoding``); ``nerf.config.preset_config`` builds them.
* ``"chain"``: fields of ``nerfstage.app.chain.ChainOptions`` (output sizes, TrainConfig overrides of the chain).

Overrides only: a value equal to the dataclass default is not repeated, so ``"default"`` is mostly empty (the
dataclass defaults are the default preset) and each default stays declared once, in its dataclass.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, get_args

from .errors import ConfigError

Preset = Literal["preview", "default", "quality"]
"""Preset names, smallest to largest."""
PRESET_NAMES: tuple[str, ...] = get_args(Preset)
DEFAULT_PRESET: Preset = "default"
"""What ``nerfstage run`` / ``train`` and a bare ``ChainOptions()`` use."""
DEMO_PRESET: Preset = "preview"
"""What ``nerfstage demo`` runs: the synthetic capture end to end within minutes on 2 CPU cores."""
Stage = Literal["capture", "train", "chain"]
DeviceKind = Literal["cpu", "cuda"]

# Training, CPU: presets march with a coarser step (0.01 / 0.02 scene units instead of diagonal / 1024) and a
# shorter occupancy warm-up: on two cores the samples per second, not the steps, are what runs out. A 64^3
# occupancy grid keeps its updates cheap (131 k cells per update after warm-up), and rendering skips samples with
# opacity below 1e-3 (lego: -17% colour evaluations, -0.003 dB). The CPU preview marches unbounded scenes with a 4x
# wider cone (1/64): early in training the field is fog everywhere, so with 1/256 a ray took ~370 samples and a
# step only ~250 rays; on the demo's synthetic room (110 s budget) 1/256 gave 470 steps, 20.76 dB, SSIM 0.410, and
# 1/64 gives 1000 steps, 23.38 dB, SSIM 0.587 with evaluation 4.5 s instead of 20 s (1/32: 22.98 dB).
#
# Unbounded captures train with proposal sampling (``ModelConfig.sampler="auto"``; A/B in nerf/config.py
# AUTO_UNBOUNDED_SAMPLER): the occupancy settings above (cone angle, step, grid) then only serve bounded scenes. On the
# demo's synthetic room with the CPU preview (110 s, load 4-6 on 2 cores, same script): occupancy 18.43 dB / SSIM
# 0.296, 233 steps, 31 s per 640x480 view; proposal 21.60 dB / SSIM 0.533, 637 steps, 7.2 s per view.
#
# Chain, preview: what ``nerfstage demo`` (60 frames of 640x480 synthetic footage) runs within 15 minutes on 2 CPU
# cores: the training preview's time budget (110 s on CPU) bounds training, 2 of the 8 held-out views are
# evaluated, and the outputs are sized for the rays/s a briefly trained model renders at on 2 cores: with the
# preview's 1/64 marching cone (session 3) a 320x240 frame takes ~2.8 s on a quiet machine (27 k rays/s; the 1/256
# cone's foggier field managed ~9 k, so the videos were 160x120 before). Quiet-machine demo with these sizes:
# 4 min 51 s (benchmarks/RESULTS.md). With proposal sampling (session 4) the preview's 1 000 steps took ~70 s of its
# 110 s budget (novel-path PSNR 25.93 dB, wall 3 min 19 s); 1 500 steps use the budget: 26.84 dB, 3 min 36 s.
PRESETS: dict[str, dict[str, Any]] = {
    "preview": {
        "capture": {"frames": 60, "max_size": 640},
        "train": {
            "cpu": {"steps": 1500, "batch_rays": 512, "target_samples": 1 << 14, "max_batch_rays": 4096,
                    "checkpoint_every": 200, "time_budget_s": 110.0, "unbounded_cone_angle": 1.0 / 64.0,
                    "model": {"encoding": {"log2_hashmap_size": 17, "max_resolution": 1024},
                              "occupancy_resolution": 64, "occupancy_warmup_steps": 32, "render_step_size": 0.02,
                              "alpha_threshold": 1.0e-3},
                    "data": {"max_image_side": 400}},
            "cuda": {"steps": 2000, "target_samples": 1 << 18, "max_batch_rays": 1 << 17,
                     "data": {"max_image_side": 800}},
        },
        "chain": {"train_overrides": {"data": {"eval_view_stride": 4}}, "video_width": 320, "video_height": 240,
                  "video_seconds": 2.0, "video_fps": 8.0, "plate_width": 512, "cubemap_face": 96,
                  "mesh_resolution": 96, "mesh_max_faces": 30_000, "splat_max_splats": 100_000, "splat_steps": 300,
                  "splat_time_budget_s": 90.0},
    },
    "default": {
        "capture": {},
        "train": {
            "cpu": {"steps": 6000, "batch_rays": 256, "target_samples": 1 << 15, "max_batch_rays": 8192,
                    "checkpoint_every": 250, "time_budget_s": 600.0,
                    "model": {"occupancy_resolution": 64, "occupancy_warmup_steps": 64, "render_step_size": 0.01,
                              "alpha_threshold": 1.0e-3},
                    "data": {"max_image_side": 800}},
            "cuda": {"target_samples": 1 << 18, "max_batch_rays": 1 << 18, "data": {"max_image_side": 1600}},
        },
        "chain": {},
    },
    "quality": {
        "capture": {"frames": 300},
        "train": {
            "cpu": {"steps": 20000, "batch_rays": 1024, "target_samples": 1 << 16,
                    "model": {"occupancy_warmup_steps": 128}, "data": {"max_image_side": 1600}},
            "cuda": {"steps": 20000, "target_samples": 1 << 18, "max_batch_rays": 1 << 18,
                     "checkpoint_every": 2000},
        },
        "chain": {"video_width": 1920, "video_height": 1080, "video_seconds": 6.0, "plate_width": 8192,
                  "cubemap_face": 2048, "mesh_resolution": 512, "mesh_max_faces": 1_000_000},
    },
}


def check_preset(name: str) -> Preset:
    """``name`` if it is a preset; ConfigError (field ``preset``) listing the presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}", field="preset")
    return name  # type: ignore[return-value]


def stage_overrides(name: str, stage: Stage) -> dict[str, Any]:
    """A copy of preset ``name``'s overrides of ``stage`` (``"train"``: both device kinds)."""
    return copy.deepcopy(PRESETS[check_preset(name)][stage])


def train_overrides(name: str, device_kind: str) -> dict[str, Any]:
    """A copy of preset ``name``'s TrainConfig overrides for ``device_kind`` (``"cuda..."`` or else CPU)."""
    kind: DeviceKind = "cuda" if device_kind.startswith("cuda") else "cpu"
    return stage_overrides(name, "train")[kind]
