"""nerf.baked + nerf.fast_proposal: baked per-cell density bounds, the fast proposal inference path against the
reference one (random and trained fields), and the run-folder cache (key, invalidation, damaged files)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nerfstage.nerf.baked import (
    CACHE_NAME,
    BakedGrids,
    BakeOptions,
    SkipOptions,
    bake,
    cache_key,
    load_or_bake,
    read_cache,
    stage_densities,
    write_cache,
)
from nerfstage.nerf.config import ProposalConfig
from nerfstage.nerf.fast_proposal import inference_counts, render_proposal_fast
from nerfstage.nerf.metrics import psnr

from .test_proposal import small_proposal_model, some_rays

SMALL_BAKE = BakeOptions(resolution=16)
AS_TRAINED = SkipOptions(proposal_fraction=1.0, nerf_fraction=1.0, kernel="torch")
"""The fast path's skipping only: the trained sample counts (the torch path; test_field_cpu.py compares the fused
one with it)."""


def structured_model(seed: int = 0, offset: float = 0.0):
    """``small_proposal_model`` with random hash tables (a field with structure), densities shifted by ``offset``
    (the last density-MLP bias of every stage): negative offsets give mostly empty space."""
    model = small_proposal_model(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        model.field.density_mlp[-1].bias[0] += offset
        for network in model.proposal.networks:
            network.mlp[-1].bias[0] += offset
    return model.eval()


def reference(model, origins, dirs):
    """The pure-torch path as trained (every sample queried), the peer of the fast path."""
    kept = model.inference.skip
    model.inference.proposal = "reference"
    model.inference.skip = dataclasses.replace(kept, kernel="torch")
    try:
        return model.render_rays(origins, dirs)
    finally:
        model.inference.skip = kept


def test_zero_thresholds_give_the_reference_image():
    model = structured_model()
    origins, dirs = some_rays()
    baked = bake(model, SMALL_BAKE)
    out = render_proposal_fast(model, origins, dirs, torch.ones(len(origins), 3), baked,
                               dataclasses.replace(AS_TRAINED, skip_opacity=0.0, stop_transmittance=0.0))
    ref = reference(model, origins, dirs)
    for key in ("rgb", "accumulation", "depth"):
        assert torch.allclose(out[key], ref[key], atol=1e-5, rtol=1e-5), key
    c = model.proposal.config
    assert out["num_evaluated"] == len(origins) * (sum(c.num_proposal_samples) + c.num_nerf_samples)


def test_baked_bounds_hold_above_every_stage_density():
    model = structured_model(offset=-2.0)
    baked = bake(model, SMALL_BAKE)
    x = torch.rand(200_000, 3, generator=torch.Generator().manual_seed(3))
    for stage, density in enumerate(stage_densities(model)):
        with torch.no_grad():
            value = density(x)
        bound = baked.bound(stage, x)
        assert bool((bound >= value).all()), (stage, float((value / bound).max()))
    assert len(baked.grids) == 3 and baked.grids[0].shape == (16**3,)


def test_skipping_saves_queries_and_keeps_the_image_within_40_db():
    model = structured_model(offset=-8.0)  # empty space around thin structure (mean opacity 0.27)
    origins, dirs = some_rays(2048)
    ref = reference(model, origins, dirs)
    model.inference.proposal, model.inference.skip = "fast", AS_TRAINED
    model.baked = bake(model, SMALL_BAKE)
    fast = model.render_rays(origins, dirs)
    c = model.proposal.config
    full = len(origins) * (sum(c.num_proposal_samples) + c.num_nerf_samples)
    assert psnr(fast["rgb"].numpy(), ref["rgb"].numpy()) >= 40.0
    assert (fast["accumulation"] - ref["accumulation"]).abs().max() < 5e-3
    assert fast["num_evaluated"] < 0.8 * full, fast["num_evaluated"] / full


def test_cache_is_keyed_by_the_weights_and_the_options(tmp_path):
    model = structured_model()
    baked = load_or_bake(model, tmp_path, SMALL_BAKE)
    assert (tmp_path / CACHE_NAME).is_file()
    again = read_cache(tmp_path / CACHE_NAME, cache_key(model, SMALL_BAKE))
    assert again is not None and all(torch.equal(a, b) for a, b in zip(again.grids, baked.grids))
    assert read_cache(tmp_path / CACHE_NAME, cache_key(model, BakeOptions(resolution=8))) is None
    with torch.no_grad():
        model.field.density_mlp[0].weight[0, 0] += 1.0  # another checkpoint
    assert read_cache(tmp_path / CACHE_NAME, cache_key(model, SMALL_BAKE)) is None
    rebaked = load_or_bake(model, tmp_path, SMALL_BAKE)
    assert rebaked.key == cache_key(model, SMALL_BAKE) != baked.key
    (tmp_path / CACHE_NAME).write_bytes(b"not a torch file")  # damaged: baked again, rewritten
    assert read_cache(tmp_path / CACHE_NAME, rebaked.key) is None
    assert load_or_bake(model, tmp_path, SMALL_BAKE).key == rebaked.key
    assert read_cache(tmp_path / CACHE_NAME, rebaked.key) is not None


def test_resolution_zero_bakes_nothing_and_renders_without_skipping(tmp_path):
    model = structured_model()
    origins, dirs = some_rays(64)
    empty = load_or_bake(model, tmp_path, BakeOptions(resolution=0))
    assert empty.grids == [] and not (tmp_path / CACHE_NAME).exists()
    out = render_proposal_fast(model, origins, dirs, torch.ones(64, 3), empty,
                               dataclasses.replace(AS_TRAINED, stop_transmittance=0.0))
    assert torch.allclose(out["rgb"], reference(model, origins, dirs)["rgb"], atol=1e-5)


def test_inference_counts_scale_the_trained_ones():
    assert inference_counts((64, 32), 24, SkipOptions()) == [48, 24, 16]
    assert inference_counts((64, 32), 24, AS_TRAINED) == [64, 32, 24]
    assert inference_counts((2,), 1, SkipOptions(proposal_fraction=0.1, nerf_fraction=0.1)) == [1, 1]


def test_cache_bounds_round_up_in_half_precision(tmp_path):
    grids = BakedGrids(2, [torch.tensor([0.1, 1.0, 3.3333, 7e4, 0.0, 1e-3, 2.0, 5.0])], key="k")
    assert write_cache(tmp_path / "g.pt", grids)
    back = read_cache(tmp_path / "g.pt", "k")
    assert bool((back.grids[0] >= grids.grids[0].clamp_max(6e4)).all())


@pytest.fixture(scope="module")
def proposal_run(tmp_path_factory):
    from nerfstage.nerf.trainer import train

    from .test_trainer import tiny_config, write_tiny_scene

    scene = write_tiny_scene(tmp_path_factory.mktemp("fast_proposal_scene"), num_frames=24)
    config = tiny_config(steps=200, rays=1024)
    proposal = ProposalConfig(num_proposal_samples=(32, 16), num_nerf_samples=16, max_resolutions=(64, 128),
                              log2_hashmap_size=14)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, sampler="proposal",
                                                                   proposal=proposal))
    run_dir = tmp_path_factory.mktemp("fast_proposal") / "run"
    train(scene, run_dir, config, progress=False)
    return run_dir


def test_trained_unbounded_scene_renders_the_same_with_baked_grids(proposal_run, monkeypatch):
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.nerf.run import load_run
    from nerfstage.render.image import render_image

    run = load_run(proposal_run, device="cpu")
    assert run.model.baked_grids().grids == []  # the default: nothing baked
    run.model.inference.bake, run.model.inference.skip = SMALL_BAKE, AS_TRAINED
    pose = run.world_from_cams[run.cameras.eval_indices[0]]
    camera = PerspectiveCamera.from_fov(96, 72, 60.0)
    fast = render_image(run.model, camera, pose, ("rgb",))["rgb"]
    assert (proposal_run / CACHE_NAME).is_file()
    run.model.inference.skip = SkipOptions()  # and with the default inference sample counts (fewer)
    fewer = render_image(run.model, camera, pose, ("rgb",))["rgb"]
    run.model.inference.proposal = "reference"
    slow = render_image(run.model, camera, pose, ("rgb",))["rgb"]
    assert psnr(fast, slow) >= 40.0, psnr(fast, slow)  # measured 83.5 dB (skipping only)
    assert psnr(fewer, slow) >= 31.0, psnr(fewer, slow)  # measured 33.0 dB (24/12 -> 11 of 32/16 -> 16 samples)

    import nerfstage.nerf.baked as baked_module

    def no_bake(*args, **kwargs):
        raise AssertionError("baked again although the cache is current")

    monkeypatch.setattr(baked_module, "bake", no_bake)
    again = load_run(proposal_run, device="cpu")
    again.model.inference.bake = SMALL_BAKE
    assert again.model.baked_grids() is not None  # read from the cache
