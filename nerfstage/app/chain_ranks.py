"""The chain under ``torchrun`` (issue 17): ``torchrun --nproc-per-node N -m nerfstage run`` (or ``nerfstage run
--nproc N``) runs the same stages on every rank, and the work that splits is split:

* capture, mesh and splats run on rank 0 only (``Ranks.on_main``); the other ranks wait and receive its result
  and its summary entries;
* training is data-parallel on every rank (``nerf/distributed.py``; rank 0 writes the run);
* the orbit and dolly-zoom videos, the latlong plate and the cubemap are rendered frame- / tile-sharded across the
  ranks through the render and panorama working folders, and rank 0 assembles each final file
  (``core/shards.py``: the same files as one process writes);
* every "is this stage's output still valid?" decision is taken on rank 0 and shared, so all ranks agree on what
  to redo; rank 0 alone writes the stage stamps, summary.json and report.html.

Outside ``torchrun`` (WORLD_SIZE 1) every helper here is a plain call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..core.shards import world_from_env

T = TypeVar("T")


class Ranks:
    """This process's place in the chain's ``torchrun`` group (rank 0 of 1 outside torchrun)."""

    def __init__(self):
        self.rank, self.world_size = world_from_env()

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True under torchrun with more than one process (a process group is joined)."""
        if self.world_size <= 1:
            return False
        import torch.distributed as dist  # heavy: torch.distributed (only under torchrun)

        return dist.is_available() and dist.is_initialized()

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist  # heavy: torch.distributed (only under torchrun)

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, summary: dict, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on rank 0 only; every rank returns its result and gets rank 0's summary stages.
        An error on rank 0 is raised on every rank (the others would otherwise wait for ever)."""
        if not self.active:
            return fn(*args, **kwargs)
        result, error = None, None
        if self.main:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - passed to the other ranks, then raised here too
                error = exc
        result, error, stages = self.share((result, error, summary["stages"] if self.main else None))
        summary["stages"] = stages
        if error is not None:
            raise error
        return result

    def sync(self, summary: dict) -> None:
        """Every rank's summary stages become rank 0's (after a stage whose figures rank 0 computed)."""
        if self.active:
            summary["stages"] = self.share(summary["stages"] if self.main else None)
