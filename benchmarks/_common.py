"""Helpers shared by the benchmarks: work folders, machine line, pose-error summaries, gpu_check.sh table rows."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# As the nerfstage CLI does: passive OpenMP waiting, so a benchmark sharing its cores is not slowed several times
# by spinning threads (no measurable cost on a quiet machine). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def data_root() -> Path:
    """The shared real captures (``NERFSTAGE_DATA``, default ``../shared/data``)."""
    return Path(os.environ.get("NERFSTAGE_DATA", REPO.parent / "shared" / "data")).resolve()


def work_dir(given: str | None, name: str) -> Path:
    """``given`` (emptied) or a fresh temporary folder."""
    if given:
        path = Path(given)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"nerfstage-{name}-"))


def machine() -> str:
    """One line describing where the figures were measured."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}"


def pose_summary(rot_err: np.ndarray, centre_err: np.ndarray, size: float) -> str:
    """``rotation mean/median/max deg, centre mean as % of the trajectory size``."""
    return (
        f"rotation error mean {rot_err.mean():.3f} / median {np.median(rot_err):.3f} / max {rot_err.max():.3f} deg; "
        f"centre error mean {100 * centre_err.mean() / size:.3f} % of the trajectory size"
    )


def train_config(args):
    """The training config of a NeRF benchmark: ``args.preset`` on ``args.device`` with ``args.threads`` CPU
    threads (also applied to this process) and the optional ``args.steps`` / ``args.time_budget`` overrides."""
    import torch

    from nerfstage.nerf.config import build_config

    torch.set_num_threads(args.threads)
    overrides = {"num_threads": args.threads}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.time_budget is not None:
        overrides["time_budget_s"] = args.time_budget
    return build_config(args.preset, args.device, **overrides)


def add_row(row_file: Path | None, part: str, figure: str) -> None:
    """Append one ``part<TAB>figure`` row to ``row_file`` (the table ``benchmarks/gpu_check.sh`` prints)."""
    if row_file is None:
        return
    with open(row_file, "a") as handle:
        handle.write(f"{part}\t{figure}\n")
