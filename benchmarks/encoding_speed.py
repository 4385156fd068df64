"""Training throughput of our fastest CPU hash grid against nerfstudio 1.1.5's pure-torch ``HashEncoding``.

Both run the same training step in the same process: hash grid (16 levels x 2 features, 2^19 table, resolution
16..2048) -> MLP head (32 -> 64 -> 16) -> MSE loss -> backward -> fused Adam step, on the same batch of 2^16
positions, with ``torch.set_num_threads(2)``. The two are timed in alternating rounds (the median step counts), so
load from other processes affects both alike. Goal: ours at least 5x faster.

nerfstudio is never a dependency of nerfstage. This script installs it on first run with
``pip install --no-deps --target ~/.cache/nerfstage/bench/nerfstudio-1.1.5 nerfstudio==1.1.5`` (a separate
benchmark environment outside the repository; jaxtyping and rich, which the encoding module needs, are already
installed with nerfstage) and puts that folder first on ``sys.path`` in this process only. nerfstudio's
``encodings.py`` imports ``nerfstudio.utils.math``, which imports ``nerfstudio.data.scene_box``, which imports
``viser.transforms`` for an oriented-box class the hash encoding never uses; when viser is not installed, an
empty stand-in module named ``viser.transforms`` is registered so that import succeeds. Nothing else is stubbed.

Usage: ``python benchmarks/encoding_speed.py [--steps 5] [--rounds 3] [--batch-log2 16] [--with-reference]``

``--backends torch,cpp,tcnn,cuda`` instead times each of our backends on its device (torch and cpp on the CPU,
tcnn and cuda on the GPU; ``--cuda-batch-log2`` sets the GPU batch) without nerfstudio, prints one line per
backend (a backend that does not import or lacks its device: a "skipped: ..." line) and, with ``--row-file``,
appends those lines as rows of ``benchmarks/gpu_check.sh``'s table.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_row  # noqa: E402

NERFSTUDIO = "nerfstudio==1.1.5"
DEFAULT_CACHE = Path.home() / ".cache" / "nerfstage" / "bench" / "nerfstudio-1.1.5"
GRID = dict(num_levels=16, features_per_level=2, log2_hashmap_size=19, base_resolution=16, max_resolution=2048)


def install_nerfstudio(target: Path) -> None:
    """pip-install nerfstudio 1.1.5 without its dependencies into ``target`` (once)."""
    if (target / "nerfstudio" / "field_components" / "encodings.py").exists():
        return
    print(f"installing {NERFSTUDIO} (--no-deps) into {target} ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), NERFSTUDIO]
    subprocess.run(cmd, check=True)


def nerfstudio_hash_encoding(target: Path) -> torch.nn.Module:
    """nerfstudio's torch HashEncoding with the same grid as ours."""
    install_nerfstudio(target)
    sys.path.insert(0, str(target))
    if importlib.util.find_spec("viser") is None:  # only scene_box's OrientedBox uses it; see the docstring
        viser, transforms = types.ModuleType("viser"), types.ModuleType("viser.transforms")
        viser.transforms = transforms
        sys.modules.update({"viser": viser, "viser.transforms": transforms})
    from nerfstudio.field_components.encodings import HashEncoding

    return HashEncoding(
        num_levels=GRID["num_levels"],
        min_res=GRID["base_resolution"],
        max_res=GRID["max_resolution"],
        log2_hashmap_size=GRID["log2_hashmap_size"],
        features_per_level=GRID["features_per_level"],
        implementation="torch",
    )


def our_hash_encoding(backend: str) -> torch.nn.Module:
    from nerfstage.nerf.encoding import HashGridConfig, make_encoding

    return make_encoding(HashGridConfig(**GRID, backend=backend), seed=0)


class Trainer:
    """One encoding + MLP head + MSE loss + fused Adam; ``step()`` is one full training step."""

    def __init__(self, encoding: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
        torch.manual_seed(0)
        out_dim = GRID["num_levels"] * GRID["features_per_level"]
        self.encoding, self.x, self.target = encoding, x, target
        self.head = torch.nn.Sequential(torch.nn.Linear(out_dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
        self.head.to(x.device)
        params = [*encoding.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-2, eps=1e-15, fused=True)

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.head(self.encoding(self.x)), self.target)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def timed(self, steps: int) -> tuple[float, float]:
        """Wall-clock and process CPU seconds per step over ``steps`` steps."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    @torch.no_grad()
    def forward_only(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.encoding(self.x)
        if self.x.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per round and encoding")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median is reported)")
    parser.add_argument("--batch-log2", type=int, default=16, help="log2 of the positions per step")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where nerfstudio is pip-installed")
    parser.add_argument("--with-reference", action="store_true", help="also time our pure-torch reference")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends of ours to time alone (torch,cpp,tcnn,cuda); no nerfstudio")
    parser.add_argument("--cuda-batch-log2", type=int, default=None, help="batch of the GPU backends (default: same)")
    parser.add_argument("--row-file", type=Path, default=None, help="append --backends rows for gpu_check.sh here")
    return parser.parse_args()


def backend_figure(backend: str, args: argparse.Namespace) -> str:
    """Training-step and forward-only samples/s of our ``backend`` on its device, or why it was skipped."""
    device = "cuda" if backend in ("tcnn", "cuda") else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return "skipped: no CUDA device"
    module = our_hash_encoding(backend).to(device)
    if module.backend_name != backend:
        return f"skipped: {backend} is unavailable here (it would run {module.backend_name}; see the warning)"
    log2 = args.cuda_batch_log2 if device == "cuda" and args.cuda_batch_log2 is not None else args.batch_log2
    g = torch.Generator().manual_seed(0)
    x, target = torch.rand(1 << log2, 3, generator=g).to(device), torch.rand(1 << log2, 16, generator=g).to(device)
    trainer = Trainer(module, x, target)
    trainer.step()  # warm-up: allocations, first-use build
    seconds = statistics.median(trainer.timed(args.steps)[0] for _ in range(args.rounds))
    forward = (1 << log2) / trainer.forward_only(args.steps)
    return (f"train {(1 << log2) / seconds:,.0f} samples/s ({seconds * 1e3:.1f} ms/step), forward {forward:,.0f} "
            f"samples/s; batch 2^{log2}, {device}" + (f" {args.threads} threads" if device == "cpu" else ""))


def time_backends(args: argparse.Namespace) -> None:
    """``--backends``: one line (and row) per backend."""
    for backend in args.backends.split(","):
        figure = backend_figure(backend.strip(), args)
        print(f"hash grid {backend.strip()}: {figure}", flush=True)
        add_row(args.row_file, f"hash grid {backend.strip()}", figure)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.backends:
        time_backends(args)
        return
    g = torch.Generator().manual_seed(0)
    n = 1 << args.batch_log2
    x, target = torch.rand(n, 3, generator=g), torch.rand(n, 16, generator=g)

    ours_module = our_hash_encoding("auto")
    trainers = {f"nerfstage ({ours_module.backend_name})": Trainer(ours_module, x, target)}
    trainers["nerfstudio 1.1.5 HashEncoding (torch)"] = Trainer(nerfstudio_hash_encoding(args.cache), x, target)
    if args.with_reference:
        trainers["nerfstage (torch reference)"] = Trainer(our_hash_encoding("torch"), x, target)
    for trainer in trainers.values():  # warm-up: allocations, first-use build
        trainer.step()
    per_step: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            per_step[name].append(trainer.timed(args.steps))

    print(f"\nbatch {n} positions, {args.threads} threads, median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'encoding':<42} {'ms/step':>9} {'samples/s':>12} {'CPU ms/step':>12}")
    speeds, cpu_ms = {}, {}
    for name, times in per_step.items():
        seconds = statistics.median(t[0] for t in times)
        cpu_ms[name] = statistics.median(t[1] for t in times) * 1e3
        speeds[name] = n / seconds
        print(f"{name:<42} {seconds * 1e3:9.1f} {speeds[name]:12,.0f} {cpu_ms[name]:12.1f}")
    ours_name, theirs_name = list(trainers)[:2]
    forward = n / trainers[ours_name].forward_only(args.steps)
    print(f"{ours_name + ', forward only':<42} {'':>9} {forward:12,.0f}")
    ratio = speeds[ours_name] / speeds[theirs_name]
    print(f"\nspeed-up, training step: {ratio:.1f}x wall clock  (goal >= 5x: {'met' if ratio >= 5 else 'NOT met'}); "
          f"{cpu_ms[theirs_name] / cpu_ms[ours_name]:.1f}x in process CPU time")


if __name__ == "__main__":
    main()
