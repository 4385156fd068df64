"""Issue 17, training: 2 gloo ranks (torchrun) vs 1 rank at equal total samples reach the same held-out PSNR
within 0.3 dB on the tiny synthetic scene; rank 0 writes the run; a 2-rank run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 320
SEEDS = (0, 1)

SCRIPT = '''
import json, os, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_run_config
import dataclasses
from nerfstage.nerf.trainer import train

steps, resume = int(sys.argv[3]), sys.argv[4] == "resume"
seed = int(os.environ.get("DP_SEED", 0))
config = dataclasses.replace(tiny_run_config(steps), num_threads=1, checkpoint_every=80, seed=seed)
stop = int(sys.argv[5])


def killed(step):  # a job killed right after its checkpoint at step ``stop``
    if step == stop:
        raise SystemExit(3)


metrics = train(sys.argv[1], sys.argv[2], None if resume else config, resume=resume, progress=False,
                on_step=killed)
print("METRICS " + json.dumps(metrics), flush=True)
sys.stderr.flush()
os._exit(0)  # as nerfstage's CLI ends a torchrun rank (app/cli.py: _leave_torchrun_rank)
'''


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset

    root = tmp_path_factory.mktemp("dp_scene")
    write_synthetic_dataset(root / "scene", SyntheticOptions(num_frames=24, width=64, height=48, seed=0))
    script = root / "train_dp.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    return root / "scene", script


def _train(scene, run: Path, nproc: int, steps: int = STEPS, resume: bool = False, seed: int = 0,
           stop: int = 0) -> dict | None:
    dataset, script = scene
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "DP_SEED": str(seed)}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    proc = subprocess.run([sys.executable, *launcher, str(script), str(dataset), str(run), str(steps),
                           "resume" if resume else "new", str(stop)], capture_output=True, text=True, env=env,
                          timeout=600)
    if stop:
        assert proc.returncode != 0 and "METRICS" not in proc.stdout
        return None
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    assert proc.stdout.count("METRICS ") == nproc  # every rank returns the metrics
    text = proc.stdout[proc.stdout.index("METRICS ") + len("METRICS "):]
    return json.JSONDecoder().raw_decode(text)[0]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_rank_and_resume(scene, tmp_path):
    """Seeds alone move this scene's PSNR at 320 steps by up to ~0.7 dB (seed 0: 20.4, seeds 1 and 2: 21.1 and
    21.2 dB on one rank), so the 0.3 dB bar is applied to the mean over the same two seeds for both."""
    ones = [_train(scene, tmp_path / f"one{seed}", 1, seed=seed) for seed in SEEDS]
    twos = [_train(scene, tmp_path / f"two{seed}", 2, seed=seed) for seed in SEEDS]
    one, two = (sum(m["psnr"] for m in ms) / len(ms) for ms in (ones, twos))
    comm = twos[0]["comm_seconds_per_step"]
    print(f"held-out PSNR 1 rank {[round(m['psnr'], 3) for m in ones]} mean {one:.3f} dB, 2 ranks "
          f"{[round(m['psnr'], 3) for m in twos]} mean {two:.3f} dB; all-reduce "
          f"{twos[0]['allreduce_bytes_per_step'] / 1e6:.2f} MB/step, {1e3 * comm:.1f} ms/step")
    assert abs(one - two) <= 0.3
    assert twos[0]["world_size"] == 2 and twos[0]["steps"] == ones[0]["steps"] == STEPS
    # equal total samples: each rank drew half the job's rays (the job's total is summed over the ranks)
    total = [m["samples_per_second"] * m["train_seconds"] for m in (ones[0], twos[0])]
    assert abs(total[1] / total[0] - 1) < 0.1
    saved = json.loads((tmp_path / "two0" / "config.json").read_text())
    assert saved["batch_rays"] == 512  # the job's batch, as configured
    checkpoint = sorted((tmp_path / "two0" / "checkpoints").glob("*.ckpt"))[-1]
    assert checkpoint.name == f"step-{STEPS:09d}.ckpt"

    _train(scene, tmp_path / "half", 2, stop=STEPS // 2)  # killed after its checkpoint at step 160
    assert (tmp_path / "half" / "checkpoints" / f"step-{STEPS // 2:09d}.ckpt").is_file()
    assert not (tmp_path / "half" / "metrics.json").exists()
    resumed = _train(scene, tmp_path / "half", 2, resume=True)
    print(f"2 ranks killed at step {STEPS // 2} and resumed: {resumed['psnr']:.4f} dB vs {twos[0]['psnr']:.4f} "
          "uninterrupted")
    # every rank resumes exactly (its own sampler state from the checkpoint): the same figure as uninterrupted
    assert resumed["steps"] == STEPS and abs(resumed["psnr"] - twos[0]["psnr"]) <= 1e-6


def test_nerfstage_train_nproc_launches_two_ranks(scene, tmp_path):
    """``nerfstage train --nproc 2`` relaunches itself under torch.distributed.run: one summary line (rank 0), the
    run written once with the 2-rank figures; a bad --nproc is a one-line error."""
    dataset, _ = scene
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nerfstage", "train", str(dataset), "-o", str(tmp_path / "run"), "--preset",
               "preview", "--steps", "4", "--device", "cpu", "-q"]
    proc = subprocess.run([*command, "--nproc", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("PSNR") == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4 and metrics["allreduce_bytes_per_step"] > 1e6
    bad = subprocess.run([*command, "--nproc", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip() == "nerfstage: error: --nproc 0: expected 1 to 1024 processes"
