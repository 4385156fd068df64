"""Run checkpoints: versioned plain dicts, written atomically, read back with ``torch.load(weights_only=True)``.

Layout: ``RUN/checkpoints/step-000001000.ckpt`` holding ``{"format_version", "step", "config", "model",
"optimizer", "rng", "trainer"}``. Everything inside is a tensor or a plain Python value (no pickled objects),
so the safe loader reads it. A write goes to a temporary file in the same folder, is fsynced and then renamed
over the final name, so a run killed at any moment leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CheckpointError
from ..core.files import atomic_path

FORMAT_VERSION = 1
"""Bumped whenever the checkpoint layout changes incompatibly."""
_NAME = re.compile(r"^step-(\d{9})\.ckpt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """RUN/checkpoints/step-000001000.ckpt."""
    return checkpoint_dir(run_dir) / f"step-{step:09d}.ckpt"


def checkpoint_step(path: Path) -> int | None:
    """The step in a checkpoint's file name (``step-000001000.ckpt`` -> 1000); None for any other name."""
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(step, p) for p in folder.iterdir() if (step := checkpoint_step(p)) is not None]
    return sorted(found)


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``payload`` (+ format_version, step) atomically as the checkpoint of ``step``; keep the newest ``keep``."""
    path = checkpoint_path(run_dir, step)
    data = {"format_version": FORMAT_VERSION, "step": int(step), **payload}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with the safe loader; CheckpointError when unreadable or of an unknown version."""
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(f"{path}: cannot read this checkpoint ({type(err).__name__}: {err})".splitlines()[0])
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        version = data.get("format_version") if isinstance(data, dict) else None
        raise CheckpointError(f"{path}: checkpoint format_version {version!r}; this nerfstage reads {FORMAT_VERSION}")
    return data


def check_finite(data: dict[str, Any], path: Path) -> None:
    """CheckpointError naming ``path`` when a floating-point tensor of the model holds NaN or infinity."""
    state = data.get("model") if isinstance(data.get("model"), dict) else {}
    broken = [name for name, value in state.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} tensor(s) hold NaN or infinity (first: {broken[0]}); the "
                              "checkpoint is damaged: resume from an earlier one or train again")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and Python as tensors / plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
