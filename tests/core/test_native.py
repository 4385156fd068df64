"""The lazy loader of optional backends (nerfstage/core/native.py): one build for many threads, cached failures
with one warning, optional imports only on first use, and build names keyed by what the binary depends on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types
import warnings
from pathlib import Path

import pytest
import torch

from nerfstage.core import native


def _counting_loader(calls: list[int], delay: float = 0.0, error: Exception | None = None):
    module = types.ModuleType("built")

    def loader():
        calls.append(1)
        time.sleep(delay)
        if error is not None:
            raise error
        return module

    return loader, module


def test_threads_asking_at_once_share_one_build():
    calls: list[int] = []
    loader, module = _counting_loader(calls, delay=0.2)
    backend = native.LazyBackend("building a test kernel", loader)
    assert backend.module is None
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(backend.load())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r is module for r in results)
    assert backend.module is module and backend.available("never printed")


def test_failure_is_tried_once_and_warns_once_with_the_fallback():
    calls: list[int] = []
    loader, _ = _counting_loader(calls, error=RuntimeError("Error building extension 'x'\n[1/2] c++ -O3 ..."))
    backend = native.LazyBackend("building a test kernel", loader)
    for _ in range(2):
        with pytest.raises(native.BackendUnavailable) as info:
            backend.load()
    assert str(info.value) == "building a test kernel failed (RuntimeError: Error building extension 'x')"
    assert isinstance(info.value, ImportError)  # callers that catch ImportError keep working
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert not backend.available()  # no fallback named: silent
        assert not backend.available("using the torch reference")
        assert not backend.available("using the torch reference")
    assert [str(w.message) for w in record] == [
        "building a test kernel failed (RuntimeError: Error building extension 'x'); using the torch reference"
    ]
    assert record[0].category is RuntimeWarning
    assert len(calls) == 1


@pytest.mark.parametrize("error", [ImportError("no module"), OSError("libcudart.so: cannot open"),
                                   subprocess.CalledProcessError(1, ["ninja"])])
def test_every_build_or_import_error_becomes_unavailable(error):
    backend = native.LazyBackend("building a test kernel", _counting_loader([], error=error)[0])
    assert not backend.available()
    with pytest.raises(native.BackendUnavailable, match=type(error).__name__):
        backend.load()


def test_a_bug_in_the_loader_is_not_hidden():
    backend = native.LazyBackend("building a test kernel", _counting_loader([], error=ValueError("bug"))[0])
    with pytest.raises(ValueError, match="bug"):
        backend.available("using the torch reference")


def test_optional_module_is_imported_on_first_load_only(tmp_path, monkeypatch):
    (tmp_path / "nerfstage_fake_optional.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = native.optional_module("nerfstage_fake_optional")
    assert "nerfstage_fake_optional" not in sys.modules
    assert backend.load().VALUE == 42
    assert sys.modules["nerfstage_fake_optional"] is backend.module
    monkeypatch.delitem(sys.modules, "nerfstage_fake_optional")
    missing = native.optional_module("nerfstage_no_such_module")
    with pytest.raises(native.BackendUnavailable,
                       match="importing nerfstage_no_such_module failed \\(ModuleNotFoundError: No module named"):
        missing.load()


SPEC = native.InlineCpp(prefix="nerfstage_test", source=Path("a.cpp"), functions=("f",), cflags=("-O3",),
                        ldflags=("-fopenmp",))


def test_cache_key_changes_with_everything_the_binary_depends_on(monkeypatch):
    text = "int f() { return 1; }"
    keys = {
        "base": native.cache_key(SPEC, text),
        "source": native.cache_key(SPEC, text + " "),
        "functions": native.cache_key(native.InlineCpp("nerfstage_test", Path("a.cpp"), ("f", "g"), ("-O3",),
                                                       ("-fopenmp",)), text),
        "cflags": native.cache_key(native.InlineCpp("nerfstage_test", Path("a.cpp"), ("f",), ("-O2",),
                                                    ("-fopenmp",)), text),
        "ldflags": native.cache_key(native.InlineCpp("nerfstage_test", Path("a.cpp"), ("f",), ("-O3",)), text),
        "include": native.cache_key(native.InlineCpp("nerfstage_test", Path("a.cpp"), ("f",), ("-O3",),
                                                     ("-fopenmp",), ("/opt/include",)), text),
    }
    monkeypatch.setenv("CXX", "clang++")
    keys["compiler"] = native.cache_key(SPEC, text)
    monkeypatch.delenv("CXX")
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    keys["torch"] = native.cache_key(SPEC, text)
    monkeypatch.undo()
    monkeypatch.setattr(native.sys, "version", "3.0.0")
    keys["python"] = native.cache_key(SPEC, text)
    monkeypatch.undo()
    monkeypatch.setattr(native, "cpu_fingerprint", lambda: "x86_64 flags: sse2")
    keys["cpu"] = native.cache_key(SPEC, text)
    monkeypatch.undo()
    assert len(set(keys.values())) == len(keys) == 10
    assert native.cache_key(SPEC, text) == keys["base"]  # deterministic
    assert len(keys["base"]) == 16 and int(keys["base"], 16) >= 0


def test_torch_include_paths_are_part_of_the_key():
    paths = native.include_paths(SPEC)
    assert str(Path(torch.__file__).parent / "include") in paths
    assert any(Path(p, "Python.h").exists() for p in paths)
    with_extra = native.include_paths(native.InlineCpp("nerfstage_test", Path("a.cpp"), ("f",),
                                                       include_paths=("/opt/include",)))
    assert with_extra == ["/opt/include", *paths]


def test_same_source_at_two_paths_shares_one_build(tmp_path):
    """Two checkouts (or an editable and an installed copy) of the same source get the same build name; a
    changed source gets another."""
    one, two = tmp_path / "one" / "k.cpp", tmp_path / "two" / "k.cpp"
    for path in (one, two):
        path.parent.mkdir()
        path.write_text("int f() { return 1; }")
    spec_one = native.InlineCpp("nerfstage_test", one, ("f",))
    spec_two = native.InlineCpp("nerfstage_test", two, ("f",))
    assert native.build_name(spec_one) == native.build_name(spec_two)
    assert native.build_name(spec_one).startswith("nerfstage_test_")
    two.write_text("int f() { return 2; }")
    assert native.build_name(spec_one) != native.build_name(spec_two)


def test_build_directory_is_under_torch_extensions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    path = native.build_directory("nerfstage_test_0123")
    assert path == tmp_path / "ext" / "nerfstage_test_0123" and path.is_dir()


def test_missing_ninja_is_unavailable_not_a_crash(tmp_path, monkeypatch):
    source = tmp_path / "k.cpp"
    source.write_text("int f() { return 1; }")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(native, "_ninja_path", lambda: None)
    backend = native.inline_extension("a test kernel", native.InlineCpp("nerfstage_test", source, ("f",)))
    with pytest.raises(native.BackendUnavailable, match="building a test kernel failed .*ninja is not installed"):
        backend.load()
    assert not (tmp_path / "ext").exists()  # nothing built, no folder left


def test_importing_native_imports_no_torch():
    code = "import sys, nerfstage.core.native; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
