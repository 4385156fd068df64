"""Optional native backends, loaded on first use: C++ extensions compiled inline and optional Python modules.

Every fast path beside a torch reference (the C++ hash grid, the C++ ray marcher, tinycudann) is one
:class:`LazyBackend`. Nothing is built or imported when this module or its users are imported; the first
:meth:`LazyBackend.load` builds or imports, under a lock (threads asking at once wait for the one build), and
caches the module -- or the failure, so a broken build is tried once per process. A failure is
:class:`BackendUnavailable` with a one-line reason; :meth:`LazyBackend.available` turns it into ``False`` and one
``RuntimeWarning`` naming the fallback (the torch reference), whatever the number of callers.

C++ sources (:class:`InlineCpp`) are compiled by ``torch.utils.cpp_extension.load_inline`` with the system
compiler and ninja, into ``$TORCH_EXTENSIONS_DIR`` (torch's default folder when unset). The build's name is the
source's prefix plus a hash of everything the binary depends on: the source text, the exported functions, the
compile and link flags, the include paths, the compiler, torch's and Python's versions and the CPU's
instruction-set flags (:func:`cache_key`). Identical sources -- two checkouts, an editable and an installed
copy -- share one cached build; different ones never overwrite each other. A build killed half-way cannot leave
later builds waiting on its lock file.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

LOG = logging.getLogger(__name__)
LOAD_ERRORS = (ImportError, OSError, RuntimeError, subprocess.CalledProcessError)
"""What a failed build or import raises (no compiler or ninja, compile error, missing shared library)."""
_BUILD_LOCK = threading.Lock()  # one build at a time in this process (PATH is changed while building)


class BackendUnavailable(ImportError):
    """An optional backend could not be built or imported (the message says why)."""


class LazyBackend:
    """A module produced on first use by ``loader`` (a build or an import), cached with its failure.

    ``what`` names the step in messages ("building the C++ hash grid", "importing tinycudann")."""

    def __init__(self, what: str, loader: Callable[[], ModuleType]):
        self.what = what
        self._loader = loader
        self._module: ModuleType | None = None
        self._failure: str | None = None
        self._warned = False
        self._lock = threading.Lock()

    @property
    def module(self) -> ModuleType | None:
        """The loaded module, or None before the first successful :meth:`load` (never builds)."""
        return self._module

    def load(self) -> ModuleType:
        """The module; built or imported on the first call. Raises :class:`BackendUnavailable` (cached)."""
        module = self._module
        if module is not None:
            return module
        with self._lock:
            if self._module is None and self._failure is None:
                try:
                    self._module = self._loader()
                except LOAD_ERRORS as exc:
                    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    self._failure = f"{self.what} failed ({type(exc).__name__}: {first_line})"
            if self._module is None:
                raise BackendUnavailable(self._failure)
            return self._module

    def available(self, fallback: str | None = None) -> bool:
        """True when the module loads. Otherwise False, after one ``RuntimeWarning`` "<reason>; <fallback>"
        for the life of this backend when ``fallback`` (what runs instead) is given."""
        try:
            self.load()
        except BackendUnavailable as exc:
            if fallback is not None:
                self._warn_once(f"{exc}; {fallback}")
            return False
        return True

    def _warn_once(self, message: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def optional_module(name: str) -> LazyBackend:
    """A backend that imports the optional module ``name`` (e.g. ``"tinycudann"``) on first use."""
    return LazyBackend(f"importing {name}", lambda: importlib.import_module(name))


@dataclass(frozen=True)
class InlineCpp:
    """One C++ source file exporting ``functions`` through pybind11, compiled on first use."""

    prefix: str
    """Name of the build before its cache key (also the Python module's name prefix)."""
    source: Path
    """The ``.cpp`` file (shipped as package data beside the module that uses it)."""
    functions: tuple[str, ...]
    """The C++ functions exported to Python."""
    cflags: tuple[str, ...] = ()
    """Extra compiler flags."""
    ldflags: tuple[str, ...] = ()
    """Extra linker flags."""
    include_paths: tuple[str, ...] = ()
    """Extra include folders (torch's and Python's are always used and always part of the key)."""


def cpu_fingerprint() -> str:
    """The machine type and the CPU's instruction-set flags (``-march=native`` builds differ with them)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()} {flags}"


def include_paths(spec: InlineCpp) -> list[str]:
    """Every include folder of the build: the spec's, torch's and Python's."""
    from torch.utils.cpp_extension import include_paths as torch_include_paths  # heavy: torch, at build time

    return [*spec.include_paths, *torch_include_paths(), sysconfig.get_paths()["include"]]


def cache_key(spec: InlineCpp, source_text: str) -> str:
    """Hex digest of what the compiled binary depends on (see the module docstring)."""
    import torch  # heavy: torch, at build time

    parts = [source_text, " ".join(spec.functions), " ".join(spec.cflags), " ".join(spec.ldflags),
             "\n".join(include_paths(spec)), os.environ.get("CXX", "c++"), torch.__version__, sys.version,
             cpu_fingerprint()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def build_name(spec: InlineCpp, source_text: str | None = None) -> str:
    """``<prefix>_<cache key>``: the extension's module name and its build folder's name (``source_text``: the
    source as read, default: read now)."""
    text = spec.source.read_text() if source_text is None else source_text
    return f"{spec.prefix}_{cache_key(spec, text)}"


def build_directory(name: str) -> Path:
    """``$TORCH_EXTENSIONS_DIR/<name>`` (torch's default root when unset), created if needed."""
    from torch.utils.cpp_extension import get_default_build_root  # heavy: torch, at build time

    path = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ninja_path() -> str | None:
    """PATH with a ninja binary on it (the ``ninja`` PyPI package's, if the system has none)."""
    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is not None:
        return path
    try:
        import ninja  # type: ignore[import-not-found]  # optional: the PyPI ninja binary
    except ImportError:
        return None
    return ninja.BIN_DIR + os.pathsep + path


@contextmanager
def _exclusive(build_dir: Path) -> Iterator[None]:
    """One build at a time per build folder, across processes, through an flock that the kernel releases even
    when the holder is killed. While holding it, a torch ``lock`` file (its FileBaton) can only be left over
    from a killed build -- torch would wait on it forever -- so it is removed."""
    try:
        import fcntl  # POSIX only
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


def compile_inline(spec: InlineCpp) -> ModuleType:
    """Compile ``spec`` (or load its cached build). Raises on any failure (BackendUnavailable without ninja)."""
    from torch.utils.cpp_extension import load_inline  # heavy: torch, at build time

    path = _ninja_path()
    if path is None:
        raise BackendUnavailable(f"ninja is not installed (pip install ninja) -- needed to build {spec.source.name}")
    source_text = spec.source.read_text()
    name = build_name(spec, source_text)
    build_dir = build_directory(name)
    LOG.info("building %s in %s (first use only; cached afterwards)", spec.source.name, build_dir)
    with _BUILD_LOCK:
        old_path = os.environ.get("PATH", "")
        os.environ["PATH"] = path
        try:
            with _exclusive(build_dir):
                return load_inline(name=name, cpp_sources=[source_text], functions=list(spec.functions),
                                   extra_cflags=list(spec.cflags), extra_ldflags=list(spec.ldflags),
                                   extra_include_paths=list(spec.include_paths), build_directory=str(build_dir),
                                   verbose=False)
        finally:
            os.environ["PATH"] = old_path


def inline_extension(what: str, spec: InlineCpp) -> LazyBackend:
    """A backend that compiles ``spec`` on first use; ``what`` names it ("the C++ hash grid")."""
    return LazyBackend(f"building {what}", lambda: compile_inline(spec))
