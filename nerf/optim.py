"""Optimisation helpers of the trainer: Adam over parameter groups, the learning-rate schedule and the adaptive
ray count."""

from __future__ import annotations

import torch

from .config import TrainConfig

MIN_BATCH_RAYS = 256
"""Smallest adaptive batch."""
COARSE_TO_FINE_START_LEVELS = 4
"""Hash-grid levels fully on at the start of a coarse-to-fine run (``TrainConfig.coarse_to_fine``)."""


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device,
                   extra_groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """Adam over the model's parameter groups (+ ``extra_groups``, e.g. pose corrections; betas 0.9/0.99 as
    instant-ngp), fused when supported; a group's own "lr" wins over ``lr``."""
    groups = [{"lr": lr, **group} for group in model.param_groups() + (extra_groups or [])]
    try:
        optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def lr_factor(config: TrainConfig, step: int, seconds: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then ``lr_gamma`` at each milestone passed
    (progress = the larger of step / steps and seconds / time budget)."""
    warm = min(1.0, 0.01 + 0.99 * step / config.lr_warmup_steps) if config.lr_warmup_steps > 0 else 1.0
    passed = sum(1 for m in config.lr_milestones if training_progress(config, step, seconds) >= m)
    return warm * config.lr_gamma**passed


def training_progress(config: TrainConfig, step: int, seconds: float) -> float:
    """How far the run is, in [0, 1+): the larger of step / steps and seconds / time budget."""
    return run_progress(step, config.steps, seconds, config.time_budget_s)


def run_progress(step: int, steps: int, seconds: float, budget_s: float | None) -> float:
    """How far a step- and time-limited loop is, in [0, 1+): the larger of step / steps and seconds / budget_s
    (steps alone without a budget). Training's schedule and the splat distillation's both follow it."""
    progress = step / max(steps, 1)
    if budget_s:
        progress = max(progress, seconds / budget_s)
    return progress


def coarse_to_fine_weights(num_levels: int, progress: float, window: float) -> torch.Tensor | None:
    """[num_levels] weights of the hash-grid levels at ``progress`` of a run whose levels open over the first
    ``window`` of it (BARF: level l gets (1 - cos(pi * clip(alpha - l, 0, 1))) / 2, alpha growing linearly from
    COARSE_TO_FINE_START_LEVELS to num_levels); None once every level is fully on (or ``window`` is 0)."""
    if window <= 0.0 or progress >= window:
        return None
    start = min(COARSE_TO_FINE_START_LEVELS, num_levels)
    alpha = start + (num_levels - start) * progress / window
    x = (alpha - torch.arange(num_levels, dtype=torch.float32)).clamp(0.0, 1.0)
    return 0.5 * (1.0 - torch.cos(torch.pi * x))


def next_num_rays(config: TrainConfig, num_rays: int, num_samples: int) -> int:
    """Ray count of the next batch so it produces about ``target_samples`` samples."""
    if config.target_samples <= 0 or num_samples <= 0:
        return num_rays
    wanted = int(num_rays * config.target_samples / num_samples)
    return max(MIN_BATCH_RAYS, min(config.max_batch_rays, wanted))
