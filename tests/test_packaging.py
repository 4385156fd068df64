"""A non-editable ``pip install`` of the package ships both C++ sources, and the installed copy builds and uses
both compiled kernels (the hash grid and the inference marcher) -- sharing the dev checkout's cached builds.

The fresh venv sees the running environment's packages (torch, numpy, ...) through a ``.pth`` file listing its
site-packages folders; a folder added that way does not run its own ``.pth`` files, so the dev checkout's
editable finder stays inactive and ``nerfstage`` can only come from the venv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from nerfstage.core import native
from nerfstage.nerf import march_cpu
from nerfstage.nerf.encoding import cpp

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".torch_ext", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", "out", "demo_out", "work", "shared")

CHECK = """
import json, sys, warnings
from pathlib import Path
warnings.simplefilter("error", RuntimeWarning)  # a fallback warning fails the check
import torch
import nerfstage
from nerfstage.nerf import march_cpu
from nerfstage.nerf.encoding import HashGridConfig, cpp, make_encoding
from nerfstage.nerf.inference import InferenceOptions, _marcher
from nerfstage.nerf.occupancy import OccupancyGrid
from nerfstage.nerf.sampler import StepWarp, ray_aabb

enc = make_encoding(HashGridConfig(num_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8))
features = enc(torch.rand(64, 3, generator=torch.Generator().manual_seed(0)))
grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=16, num_cascades=1, seed=0)
grid.occupied.fill_(True)
grid.set_coarse(4)
step = _marcher(InferenceOptions(), torch.device("cpu"))  # what "auto" picks on the CPU
origins = torch.tensor([[0.0, 0.0, -3.0], [0.5, 0.2, -3.0]])  # [2, 3], through the box z = -1..1
directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
warp = StepWarp(0.02, 0.0)
t_near, t_far = ray_aabb(origins, directions, grid.occupied_aabb)
t0, t1, count, _ = step(origins, directions, warp.s_of_t(t_near), warp.s_of_t(t_far), grid, warp, 8)
print(json.dumps({
    "nerfstage": nerfstage.__file__,
    "hashgrid_backend": enc.backend_name,
    "hashgrid_features": list(features.shape),
    "hashgrid_source": str(cpp.SOURCE),
    "hashgrid_module": cpp.BACKEND.module.__name__,
    "marcher_is_compiled": step is march_cpu.march_next,
    "marcher_source": str(march_cpu.SOURCE),
    "marcher_module": march_cpu.BACKEND.module.__name__,
    "marcher_steps": count.tolist(),
    "marcher_first_t": t0[:, 0].tolist(),
}))
"""


def _site_dirs() -> list[str]:
    """The running interpreter's site-packages folders (its own and any a ``.pth`` file added)."""
    purelib = sysconfig.get_paths()["purelib"]
    extra = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")) and p != purelib]
    return [purelib, *dict.fromkeys(extra)]


def _can_build_without_isolation() -> bool:
    """setuptools >= 68 and a bdist_wheel (the ``wheel`` package or setuptools >= 70.1) importable here."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    major_minor = tuple(int(p) for p in version("setuptools").split(".")[:2])
    return major_minor >= (68, 0) and (major_minor >= (70, 1) or importlib.util.find_spec("wheel") is not None)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, cmd))[:200]
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_non_editable_install_builds_and_uses_both_cpp_kernels(tmp_path):
    venv, source, elsewhere = tmp_path / "venv", tmp_path / "src", tmp_path / "cwd"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)  # builds in a copy: no build/ or egg-info in the checkout
    elsewhere.mkdir()
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120)
    python = venv / "bin" / "python"
    venv_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          elsewhere, 60).stdout.strip())
    (venv_site / "_nerfstage_test_env.pth").write_text("\n".join(_site_dirs()) + "\n")
    # without setuptools >= 68 and wheel here (a fresh 3.11 venv has setuptools 65), pip fetches them from PyPI
    isolation = ["--no-build-isolation"] if _can_build_without_isolation() else []
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed",
          "--disable-pip-version-check", *isolation, str(source)], elsewhere, 600)

    result = _run([str(python), "-c", CHECK], elsewhere, 900)  # a cold build of both kernels: about a minute
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["nerfstage"]).is_relative_to(venv_site)
    for kernel in ("hashgrid", "marcher"):
        assert Path(found[f"{kernel}_source"]).is_relative_to(venv_site)
        assert Path(found[f"{kernel}_source"]).is_file()
    assert found["hashgrid_backend"] == "cpp" and found["hashgrid_features"] == [64, 4]
    assert found["marcher_is_compiled"] and found["marcher_steps"] == [8, 8]
    assert found["marcher_first_t"] == pytest.approx([2.0, 2.0], abs=1e-5)  # entry into the occupied box
    # same sources as this checkout: the same cached builds (one build for the dev and the installed copy)
    assert found["hashgrid_module"] == native.build_name(cpp.SPEC)
    assert found["marcher_module"] == native.build_name(march_cpu.SPEC)
