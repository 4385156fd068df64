"""Splitting a job's frames or tiles between farm shards and ``torchrun`` ranks; the job file assembly reads.

A render job has ``count`` items (the frames of a path, the tiles of a panorama, the plates of a track), numbered
1..count as the files are. Three things narrow the items one process renders, in this order:

* ``--frames A-B`` (farm style, 1-based and inclusive: what Deadline / OpenCue hand a task): items A..B only;
* ``--shard K/N`` (Slurm job arrays and the like): of those, every N-th one starting at the K-th;
* ``torchrun`` (``WORLD_SIZE`` / ``RANK`` from the environment): of those, every WORLD_SIZE-th one from RANK.

Interleaving (rather than cutting into blocks) balances cost when it varies smoothly along the job (sky tiles at
the top of a panorama, an empty stretch of a camera path). Each process writes its items into the output's
working folder (one file per item: resumable per item) and a job file there (``nerfstage_job.json``: what the
final file is and how to build it). The final file is assembled once: by rank 0 after a barrier when ``torchrun``
ran the whole job, otherwise by ``nerfstage assemble OUTPUT``, which names any missing item and the shard that
should have written it.

Only the library's distributed helpers here touch ``torch.distributed`` (imported when a process group is needed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError

JOB_FILE = "nerfstage_job.json"
"""Name of the job file in an output's working folder."""
JOB_FORMAT = 1
"""Version of the job file's layout."""
DIST_TIMEOUT = timedelta(hours=12)
"""How long a rank waits at a barrier for the slowest one (a long render is not an error)."""


def parse_frames(text: str | None) -> tuple[int, int] | None:
    """``"A-B"`` (or ``"A"``) -> (A, B), 1-based inclusive; None stays None; ConfigError naming ``--frames``."""
    if text is None:
        return None
    parts = str(text).strip().split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
    except ValueError:
        first, last = 0, -1
    if not 1 <= first <= last:
        raise ConfigError(f"frames={text!r}: expected A-B with 1 <= A <= B (e.g. 1-24), 1-based and inclusive",
                          field="frames")
    return first, last


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; None stays None; ConfigError naming ``--shard``."""
    if text is None:
        return None
    parts = str(text).strip().split("/")
    try:
        index, total = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)
    except ValueError:
        index, total = 0, 0
    if not 1 <= index <= total:
        raise ConfigError(f"shard={text!r}: expected K/N with 1 <= K <= N (e.g. 2/8; Slurm: "
                          "$SLURM_ARRAY_TASK_ID/N with --array=1-N)", field="shard")
    return index, total


def world_from_env() -> tuple[int, int]:
    """(rank, world size) that ``torchrun`` exported (``RANK``, ``WORLD_SIZE``); (0, 1) outside it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: "
                          "expected integers (as torchrun sets them)") from exc
    if not (world >= 1 and 0 <= rank < world):
        raise ConfigError(f"RANK={rank}, WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return rank, world


@dataclass(frozen=True)
class ShardSpec:
    """Which of a job's items this process renders (see the module docstring)."""

    frames: tuple[int, int] | None = None
    """1-based inclusive item range (``--frames A-B``); None = all."""
    shard: tuple[int, int] | None = None
    """(K, N) of ``--shard K/N``; None = no farm sharding."""
    rank: int = 0
    """This process's rank in its ``torchrun`` group."""
    world_size: int = 1
    """Processes in the ``torchrun`` group."""

    @classmethod
    def parse(cls, frames: str | None = None, shard: str | None = None) -> ShardSpec:
        """From the ``--frames`` / ``--shard`` texts and the ``torchrun`` environment."""
        rank, world = world_from_env()
        return cls(parse_frames(frames), parse_shard(shard), rank, world)

    @property
    def sharded(self) -> bool:
        """True when the items are written through the working folder (any split at all)."""
        return self.frames is not None or self.shard is not None or self.world_size > 1

    @property
    def partial(self) -> bool:
        """True for a farm piece (``--frames`` / ``--shard``): ``nerfstage assemble`` builds the final file."""
        return self.frames is not None or self.shard is not None

    @property
    def assembles(self) -> bool:
        """Whether this process builds the final file (rank 0 of a whole job)."""
        return self.sharded and not self.partial and self.rank == 0

    @property
    def shows_progress(self) -> bool:
        return self.rank == 0

    @property
    def lock_part(self) -> str | None:
        """What this process locks of a shared output (``core.lock``): None = the whole output; a sharded process
        locks only its own piece, so the shards of one job run side by side and a duplicate of one is refused."""
        if not self.sharded:
            return None
        frames = f"f{self.frames[0]}-{self.frames[1]}" if self.frames else "all"
        shard = f"s{self.shard[0]}of{self.shard[1]}" if self.shard else "s1of1"
        return f"{frames}.{shard}.r{self.rank}of{self.world_size}"

    def candidates(self, count: int) -> list[int]:
        """0-based items of ``--frames`` and ``--shard`` (before the rank split)."""
        first, last = self.frames or (1, count)
        if last > count:
            raise ConfigError(f"frames={first}-{last}: the job has {count} items (1-{count})", field="frames")
        items = list(range(first - 1, last))
        if self.shard is not None:
            items = items[self.shard[0] - 1::self.shard[1]]
        return items

    def select(self, count: int) -> list[int]:
        """0-based items of ``count`` this process renders."""
        return self.candidates(count)[self.rank::self.world_size]

    def label(self) -> str:
        """``shard 2/4``, ``frames 1-24``, ``rank 1/2`` ... (for messages and done markers)."""
        parts = []
        if self.frames is not None:
            parts.append(f"frames {self.frames[0]}-{self.frames[1]}")
        if self.shard is not None:
            parts.append(f"shard {self.shard[0]}/{self.shard[1]}")
        return ", ".join(parts) or "the whole job"


def owner(index: int, shard_total: int | None) -> str:
    """Which ``--shard K/N`` renders 0-based item ``index`` of a job split N ways (without --frames)."""
    return f"--shard {index % shard_total + 1}/{shard_total}" if shard_total else "its --frames range"


def ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> ``1-3, 7, 9-10``."""
    out: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def missing_message(output: Path, what: str, missing: list[int], names: list[str], shard_total: int | None) -> str:
    """One line naming the missing items (1-based ``missing``), a few of their files and the shards to rerun."""
    shards = sorted({owner(i - 1, shard_total) for i in missing}) if shard_total else []
    rerun = f"; rerun {', '.join(shards)}" if shards else "; rerun the task(s) that render them"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return (f"{output}: {len(missing)} {what} missing ({what} {ranges(missing)}: {shown}){rerun}, "
            f"then `nerfstage assemble {output}` again")


# --- the job file ------------------------------------------------------------------------------------------------


def write_job(folder: Path, job: dict[str, Any], overwrite: bool) -> None:
    """Write (or check) the job file of a working folder: a different job there is refused unless ``overwrite``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    job = json.loads(json.dumps({"format_version": JOB_FORMAT, **job}))
    file = folder / JOB_FILE
    if file.exists() and not overwrite:
        try:
            old = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == job:
            return
        raise ConfigError(f"{file}: this working folder holds a different sharded job; finish it, or pass "
                          "--overwrite (every shard) or delete the folder to start afresh")
    tmp = folder / f".{JOB_FILE}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(job, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, file)


def read_job(folder: Path) -> dict[str, Any] | None:
    """The job file of a working folder, or None when there is none / it is unreadable."""
    try:
        job = json.loads((Path(folder) / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return job if isinstance(job, dict) and job.get("format_version") == JOB_FORMAT else None


def mark_done(folder: Path, spec: ShardSpec) -> None:
    """Record that this process finished its items (``nerfstage assemble`` reads the shard count from it)."""
    total = spec.shard[1] if spec.shard else 0
    name = f"done.shard-{spec.shard[0] if spec.shard else 0}-of-{total}.rank-{spec.rank}-of-{spec.world_size}"
    (Path(folder) / f".{name}").write_text(spec.label() + "\n", encoding="utf-8")


def shard_total(folder: Path) -> int | None:
    """N of the ``--shard K/N`` runs that finished in ``folder`` (None when none used --shard)."""
    totals = {int(p.name.split("-of-")[1].split(".")[0]) for p in Path(folder).glob(".done.shard-*")}
    totals.discard(0)
    return max(totals) if totals else None


def clear_done(folder: Path) -> None:
    for marker in Path(folder).glob(".done.shard-*"):
        marker.unlink(missing_ok=True)


# --- torch.distributed --------------------------------------------------------------------------------------------


def init_process_group(device: str = "cpu") -> bool:
    """Join the ``torchrun`` group (gloo on CPU, NCCL on CUDA) unless already joined; True when this call joined it.
    Outside ``torchrun`` (WORLD_SIZE 1) nothing happens."""
    _, world = world_from_env()
    if world <= 1:
        return False
    import torch.distributed as dist  # heavy: torch (only under torchrun)

    if dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise ConfigError("WORLD_SIZE > 1 but MASTER_ADDR / MASTER_PORT are not set: start the job with torchrun")
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, timeout=DIST_TIMEOUT)
    return True


def bind_local_device() -> None:
    """Under ``torchrun`` on a CUDA machine: make ``cuda`` mean this rank's GPU (``LOCAL_RANK``)."""
    if "LOCAL_RANK" not in os.environ or world_from_env()[1] <= 1:
        return
    import torch  # heavy: torch (only under torchrun)

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    import torch.distributed as dist  # heavy: torch (only under torchrun)

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy_process_group() -> None:
    import torch.distributed as dist  # heavy: torch (only under torchrun)

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "cpu") -> Iterator[bool]:
    """Inside: this process is in its ``torchrun`` group (joined here and left at the end if not already)."""
    joined = init_process_group(device)
    try:
        yield joined
        if joined:
            barrier()  # every rank done before any leaves: gloo aborts a rank whose peer tore down first
    finally:
        if joined:
            destroy_process_group()


def require(condition: bool, message: str) -> None:
    """InputError(message) unless ``condition`` (assembly checks)."""
    if not condition:
        raise InputError(message)
