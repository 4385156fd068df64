"""nerf.checkpoint and nerf.config: versioned atomic checkpoints, RNG round trips, strict config JSON, presets."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from nerfstage.core.errors import CheckpointError, ConfigError
from nerfstage.core.presets import PRESETS
from nerfstage.nerf import checkpoint as ckpt
from nerfstage.nerf.config import (
    TrainConfig,
    build_config,
    config_from_dict,
    config_to_dict,
    load_config,
    preset_config,
    save_config,
)


def test_save_load_round_trip_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    payload = {"config": {"steps": 5, "nested": [1, 2.5, None]}, "model": model.state_dict(),
               "optimizer": opt.state_dict(), "rng": ckpt.rng_state()}
    path = ckpt.save_checkpoint(tmp_path, 1000, payload)
    assert path == tmp_path / "checkpoints" / "step-000001000.ckpt"
    data = torch.load(path, weights_only=True)  # the safe loader reads it: no pickled objects inside
    assert data["format_version"] == ckpt.FORMAT_VERSION and data["step"] == 1000
    loaded = ckpt.load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]  # no temp file left


def test_keeps_last_k_and_finds_latest(tmp_path):
    for step in (100, 200, 300, 400):
        ckpt.save_checkpoint(tmp_path, step, {"x": torch.tensor(step)}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [300, 400]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000000400.ckpt"
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None


def test_unknown_version_and_corrupt_files_are_clear_errors(tmp_path):
    path = tmp_path / "future.ckpt"
    torch.save({"format_version": 99, "step": 1}, path)
    with pytest.raises(CheckpointError, match="format_version 99"):
        ckpt.load_checkpoint(path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        ckpt.load_checkpoint(bad)


def test_rng_state_round_trip(tmp_path):
    ckpt.seed_everything(5)
    state = ckpt.rng_state()
    path = ckpt.save_checkpoint(tmp_path, 1, {"rng": state})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.seed_everything(123)  # scramble
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_config_json_round_trip(tmp_path):
    config = build_config("preview", "cpu", steps=123, seed=7)
    path = tmp_path / "config.json"
    save_config(path, config)
    text = json.loads(path.read_text())  # plain JSON
    assert text["steps"] == 123 and text["model"]["encoding"]["log2_hashmap_size"] == 17
    assert load_config(path) == config


def test_config_loading_is_strict():
    base = config_to_dict(TrainConfig())
    with pytest.raises(ConfigError, match="unknown key.*stepz"):
        config_from_dict(TrainConfig, {**base, "stepz": 3})
    with pytest.raises(ConfigError, match="steps = '10'; expected int"):
        config_from_dict(TrainConfig, {**base, "steps": "10"})
    with pytest.raises(ConfigError, match="model.background = 'pink'"):
        config_from_dict(TrainConfig, {**base, "model": {**base["model"], "background": "pink"}})
    with pytest.raises(ConfigError, match="model.encoding: unknown key.*unknown"):
        config_from_dict(TrainConfig, {**base, "model": {**base["model"], "encoding": {"unknown": 1}}})
    with pytest.raises(ConfigError, match="device"):
        build_config("default", "gpu")
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        preset_config("fast", "cpu")


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_presets_are_data_and_build(name, kind):
    config = preset_config(name, kind)
    assert config.steps > 0 and config.batch_rays > 0
    assert config_from_dict(TrainConfig, config_to_dict(config)) == config
