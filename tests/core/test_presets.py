"""nerfstage.core.presets: one table of per-stage overrides; the configs every preset gives are pinned here (the
values of the tables before they became one), so a refactor cannot change them silently."""

from __future__ import annotations

import dataclasses
import sys
from typing import get_args

import pytest

from nerfstage.app.chain import ChainOptions, chain_options
from nerfstage.capture.pipeline import CaptureOptions
from nerfstage.core.errors import ConfigError
from nerfstage.core.presets import DEFAULT_PRESET, DEMO_PRESET, PRESETS, Preset, stage_overrides
from nerfstage.nerf.config import TrainConfig, build_config, config_to_dict, preset_config

TRAIN_KEYS = ("steps", "time_budget_s", "batch_rays", "target_samples", "max_batch_rays", "checkpoint_every",
              "data.max_image_side", "model.encoding.log2_hashmap_size", "model.encoding.max_resolution",
              "model.occupancy_resolution", "model.occupancy_warmup_steps", "model.render_step_size",
              "model.alpha_threshold", "unbounded_cone_angle")
TRAIN_PINNED = {
    ("preview", "cpu"): (1500, 110.0, 512, 1 << 14, 4096, 200, 400, 17, 1024, 64, 32, 0.02, 1e-3, 1 / 64),
    ("preview", "cuda"): (2000, None, 4096, 1 << 18, 1 << 17, 1000, 800, 19, 2048, 128, 256, None, 0.0, 1 / 256),
    ("default", "cpu"): (6000, 600.0, 256, 1 << 15, 8192, 250, 800, 19, 2048, 64, 64, 0.01, 1e-3, 1 / 256),
    ("default", "cuda"): (5000, None, 4096, 1 << 18, 1 << 18, 1000, 1600, 19, 2048, 128, 256, None, 0.0, 1 / 256),
    ("quality", "cpu"): (20000, None, 1024, 1 << 16, 1 << 16, 1000, 1600, 19, 2048, 128, 128, None, 0.0, 1 / 256),
    ("quality", "cuda"): (20000, None, 4096, 1 << 18, 1 << 18, 2000, 0, 19, 2048, 128, 256, None, 0.0, 1 / 256),
}
CHAIN_KEYS = ("frames", "max_size", "video_width", "video_height", "video_seconds", "video_fps", "plate_width",
              "cubemap_face", "mesh_resolution", "mesh_max_faces", "train_preset", "train_overrides")
CHAIN_PINNED = {
    "preview": (60, 640, 320, 240, 2.0, 8.0, 512, 96, 96, 30_000, "preview", {"data": {"eval_view_stride": 4}}),
    "default": (150, 1600, 960, 540, 4.0, 30.0, 4096, 1024, 256, 200_000, "default", {}),
    "quality": (300, 1600, 1920, 1080, 6.0, 30.0, 8192, 2048, 512, 1_000_000, "quality", {}),
}


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize("name, kind", sorted(TRAIN_PINNED))
def test_train_presets_give_the_pinned_configs(name, kind):
    flat = _flat(config_to_dict(preset_config(name, kind)))
    assert tuple(flat[k] for k in TRAIN_KEYS) == TRAIN_PINNED[name, kind]
    assert build_config(name, device=kind, seed=3) == dataclasses.replace(preset_config(name, kind), device=kind,
                                                                          seed=3)


@pytest.mark.parametrize("name", sorted(CHAIN_PINNED))
def test_chain_presets_give_the_pinned_options(name):
    options = chain_options(name)
    assert options.preset == name
    assert tuple(getattr(options, k) for k in CHAIN_KEYS) == CHAIN_PINNED[name]


def test_a_bare_chain_options_is_the_default_preset():
    assert ChainOptions() == chain_options(DEFAULT_PRESET)
    assert ChainOptions().preset == "default" == DEFAULT_PRESET
    assert DEMO_PRESET == "preview"
    # the chain's capture sizes are CaptureOptions' own defaults, not re-declared numbers
    assert (ChainOptions().frames, ChainOptions().max_size) == (CaptureOptions().frames, CaptureOptions().max_size)


def test_one_table_keyed_by_the_literal():
    assert tuple(PRESETS) == get_args(Preset) == ("preview", "default", "quality")
    for table in PRESETS.values():
        assert set(table) == {"capture", "train", "chain"} and set(table["train"]) == {"cpu", "cuda"}


def _repeated_defaults(overrides: dict, defaults: object, where: str) -> list[str]:
    """Keys of ``overrides`` whose value equals the dataclass ``defaults``' (recursing into nested dataclasses)."""
    repeated = []
    for key, value in overrides.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            repeated += _repeated_defaults(value, default, f"{where}.{key}")
        elif value == default:
            repeated.append(f"{where}.{key}")
    return repeated


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_hold_overrides_only(name):
    """A value equal to the dataclass default is not repeated in the table."""
    repeated = _repeated_defaults(PRESETS[name]["capture"], CaptureOptions(), f"{name}.capture")
    repeated += _repeated_defaults(PRESETS[name]["chain"], ChainOptions(), f"{name}.chain")
    for kind, overrides in PRESETS[name]["train"].items():
        repeated += _repeated_defaults(overrides, TrainConfig(), f"{name}.train.{kind}")
    assert repeated == []
    assert not PRESETS["default"]["chain"] and not PRESETS["default"]["capture"]


def test_unknown_preset_names_the_field_and_the_choices():
    for call in (lambda: preset_config("turbo", "cpu"), lambda: chain_options("turbo"),
                 lambda: stage_overrides("turbo", "capture")):
        with pytest.raises(ConfigError, match="unknown preset 'turbo'; expected one of preview, default, quality") \
                as err:
            call()
        assert err.value.field == "preset"


def test_presets_module_is_pure_data():
    """The CLI reads the preset names at start-up: the table must not pull torch in."""
    import subprocess

    code = "import sys, nerfstage.core.presets; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_demo_runs_the_demo_preset_by_default(monkeypatch, tmp_path):
    """``run_demo`` without options and ``nerfstage demo`` without --preset both run DEMO_PRESET."""
    from nerfstage.app import chain, chain_stages
    from nerfstage.app.cli import main

    seen = []

    def stop(workdir, options, footage, summary):
        seen.append(options)
        raise ConfigError("stop here")

    monkeypatch.setattr(chain_stages, "synthetic_stage", stop)
    with pytest.raises(ConfigError):
        chain.run_demo(tmp_path / "a")
    with pytest.raises(SystemExit):
        main(["demo", "-o", str(tmp_path / "b"), "--quiet"])
    assert [o.preset for o in seen] == [DEMO_PRESET, DEMO_PRESET]
    assert seen[1] == chain_options(DEMO_PRESET, progress=False)
