"""``nerfstage export splats``: a trained run as Gaussian splats in a file engines and web viewers read.

Steps: place splats from the field (:func:`.splats_init.splats_from_run`), optimise them against renders of the
field (``export/splats_distill.py``: ``distill_splats``; skipped with ``steps=0``), write by extension
(``render/splats/io.py``: ``.ply`` 3DGS layout, ``.spz``, ``.glb``/``.gltf`` with ``KHR_gaussian_splatting``;
axes, units and colour space in ``docs/splats.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import ConfigError, OutputExistsError
from ..nerf.run import LoadedRun
from ..render.splats.io import splat_format, write_splats
from ..render.splats.model import MAX_SPLATS
from .from_run import ExportResult
from .splats_init import Progress, SplatInitOptions, splats_from_run


DISTILL_TIME_BUDGET_S = 600.0
"""Default seconds of distillation (issue 16's CPU budget: 10 minutes)."""


@dataclass(frozen=True)
class SplatExportOptions:
    """``nerfstage export splats`` settings."""

    max_splats: int = MAX_SPLATS
    """Most splats written (the initialisation's budget and the distillation's densification cap)."""
    steps: int | None = None
    """Distillation steps; None = the distillation's default; 0 = write the initial splats as they are."""
    time_budget_s: float | None = DISTILL_TIME_BUDGET_S
    """Stop the distillation after this many seconds (the CPU budget of issue 16: 10 minutes); None = every step."""
    init: SplatInitOptions = field(default_factory=SplatInitOptions)
    """How the splats are placed (``max_splats`` above overrides its budget)."""
    overwrite: bool = False
    """Replace an existing file."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self):
        if int(self.max_splats) < 1:
            raise ConfigError(f"max_splats={self.max_splats}: expected a positive number", field="max_splats")
        if self.steps is not None and int(self.steps) < 0:
            raise ConfigError(f"steps={self.steps}: expected 0 or more", field="steps")
        if self.time_budget_s is not None and not float(self.time_budget_s) > 0:
            raise ConfigError(f"time_budget_s={self.time_budget_s}: expected a positive number of seconds",
                              field="time_budget_s")


class StageBars:
    """``progress(stage, done, total)`` shown as one tqdm bar per stage (nothing when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, dynamic_ncols=True, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def check_splat_output(output: Path, overwrite: bool) -> str:
    """The format of ``output`` after checking it may be written (before any work)."""
    suffix = splat_format(output)
    if Path(output).exists() and not overwrite:
        raise OutputExistsError(f"{output}: already exists; pass --overwrite to replace it or choose another name")
    return suffix


def distill(run: LoadedRun, splats, options: SplatExportOptions, progress: Progress | None):
    """The splats optimised against the field (``export/splats_distill.py``)."""
    from .splats_distill import DistillOptions, distill_splats  # heavy: the rasteriser (C++ kernel, optional gsplat)

    wanted = {"max_splats": int(options.max_splats), "time_budget_s": options.time_budget_s}
    if options.steps is not None:
        wanted["steps"] = int(options.steps)
    distill_options = DistillOptions(**wanted)

    def step_done(step: int, info: dict) -> None:
        if progress is not None:
            progress("distilling splats", step + 1, distill_options.steps)

    return distill_splats(run, splats, distill_options, progress=step_done)


def export_splats(run: LoadedRun, output: Path, options: SplatExportOptions | None = None) -> ExportResult:
    """Initialise, distil and write the run's splats (dataset frame) to ``output`` (.ply / .spz / .glb / .gltf)."""
    options = options or SplatExportOptions()
    check_splat_output(output, options.overwrite)
    start = time.perf_counter()
    bars = StageBars(options.progress)
    stats: dict = {}
    try:
        splats = splats_from_run(run, replace(options.init, max_splats=int(options.max_splats)), bars, stats)
        if options.steps != 0:
            splats = distill(run, splats, options, bars)
    finally:
        bars.close()
    files = write_splats(output, splats, overwrite=options.overwrite)
    result = {"splats": float(splats.num_splats), "initial_splats": float(stats["splats"]),
              "voxel": float(stats["voxel"]), "bytes": float(sum(Path(f).stat().st_size for f in files))}
    return ExportResult(files, time.perf_counter() - start, result)
