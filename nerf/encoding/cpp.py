"""Fast CPU backend: a small C++ extension (``hashgrid_cpu.cpp``) built on first use and cached.

The extension is compiled with the system C++ compiler through ``torch.utils.cpp_extension.load_inline`` the first
time :func:`load` is called (about 30 s), never at import. Builds are cached in torch's extension directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) under a name that hashes the source, the torch
version and the CPU's instruction-set flags, so a changed source or another machine never reuses a stale build.
A build killed half-way (Ctrl-C, a killed training run) cannot leave later runs waiting on its lock file.
If the build fails (no compiler, no ninja, compile error) :func:`load` raises :class:`BackendUnavailable`; the
caller falls back to the torch reference with one warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from jaxtyping import Float
from torch import Tensor

from .layout import LevelSpec

SOURCE = Path(__file__).with_name("hashgrid_cpu.cpp")
EXTENSION_PREFIX = "nerfstage_hashgrid_cpu"
LOG = logging.getLogger(__name__)
FUNCTIONS = ["hashgrid_forward", "hashgrid_backward_tables", "hashgrid_backward_positions"]
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]

_extension: ModuleType | None = None
_failure: str | None = None


class BackendUnavailable(ImportError):
    """The compiled CPU backend could not be built or loaded (the message says why)."""


def _cpu_fingerprint() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()} {flags}"


def extension_name(source: str, prefix: str = EXTENSION_PREFIX, cflags: list[str] | None = None) -> str:
    """Name of the cached build: prefix + hash of source, flags, torch/python versions and CPU features."""
    flags = CFLAGS if cflags is None else cflags
    key = "\n".join([source, " ".join(flags), torch.__version__, sys.version, _cpu_fingerprint()])
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _ninja_path() -> str | None:
    """PATH with a ninja binary on it (the ``ninja`` PyPI package's, if the system has none)."""
    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is not None:
        return path
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return None
    return ninja.BIN_DIR + os.pathsep + path


def build_directory(name: str) -> Path:
    """``$TORCH_EXTENSIONS_DIR/<name>`` (torch's default root when unset), created if needed."""
    from torch.utils.cpp_extension import get_default_build_root

    path = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _exclusive(build_dir: Path) -> Iterator[None]:
    """One nerfstage build at a time per build folder, through an flock that the kernel releases even when the
    holder is killed. While holding it, a torch ``lock`` file (its FileBaton) can only be left over from a killed
    build -- torch would wait on it forever -- so it is removed."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on torch's own baton
        yield
        return
    with open(build_dir / "nerfstage.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (build_dir / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compile_inline(name: str, source: str, functions: list[str], cflags: list[str], ldflags: list[str],
                   what: str) -> ModuleType:
    """Compile (or load the cached build of) a ``load_inline`` extension ``name`` under one build lock, with ninja
    on PATH. ``what`` names it in messages. Raises on any failure (BackendUnavailable when ninja is missing)."""
    from torch.utils.cpp_extension import load_inline

    path = _ninja_path()
    if path is None:
        raise BackendUnavailable(f"ninja is not installed (pip install ninja) -- needed to build the {what}")
    build_dir = build_directory(name)
    LOG.info("building the %s in %s (first use only; cached afterwards)", what, build_dir)
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = path
    try:
        with _exclusive(build_dir):
            return load_inline(name=name, cpp_sources=[source], functions=functions, extra_cflags=cflags,
                               extra_ldflags=ldflags, build_directory=str(build_dir), verbose=False)
    finally:
        os.environ["PATH"] = old_path


def _build() -> ModuleType:
    """Compile (or load the cached build of) the extension. Raises on any failure."""
    source = SOURCE.read_text()
    return compile_inline(extension_name(source), source, FUNCTIONS, CFLAGS, ["-fopenmp"], "CPU hash grid")


def load() -> ModuleType:
    """The built extension; builds it on the first call. Raises BackendUnavailable (cached) when it cannot."""
    global _extension, _failure
    if _extension is not None:
        return _extension
    if _failure is not None:
        raise BackendUnavailable(_failure)
    try:
        _extension = _build()
    except (ImportError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _failure = f"building the C++ hash-grid extension failed ({type(exc).__name__}: {first_line})"
        raise BackendUnavailable(_failure) from exc
    return _extension


def available() -> bool:
    """True when the extension is built or builds now."""
    try:
        load()
    except BackendUnavailable:
        return False
    return True


def _level_args(specs: list[LevelSpec]) -> tuple[list[float], list[int], list[int], list[int]]:
    return (
        [s.scale for s in specs],
        [s.resolution for s in specs],
        [s.size for s in specs],
        [int(s.hashed) for s in specs],
    )


class _HashGridCpu(torch.autograd.Function):
    """Autograd wrapper: the table gradient and (when asked for) the position gradient come from the kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, specs: list[LevelSpec], *tables: Tensor) -> Tensor:  # type: ignore[override]
        ext = load()
        args = _level_args(specs)
        ctx.save_for_backward(x, *tables)
        ctx.level_args = args
        return ext.hashgrid_forward(x, list(tables), *args)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, *tables = ctx.saved_tensors
        ext = load()
        grad_out = grad_out.contiguous()
        grad_tables: list[Tensor | None] = [None] * len(tables)
        if any(ctx.needs_input_grad[2:]):
            grad_tables = list(ext.hashgrid_backward_tables(x, grad_out, tables, *ctx.level_args))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = ext.hashgrid_backward_positions(x, grad_out, tables, *ctx.level_args)
        return (grad_x, None, *grad_tables)


def encode(x: Float[Tensor, "n 3"], tables: list[Tensor], specs: list[LevelSpec]) -> Float[Tensor, "n d"]:
    """All levels on the CPU (float32, ``x`` in [0, 1]^3); same output layout as ``reference.encode``."""
    return _HashGridCpu.apply(x.contiguous(), specs, *tables)
