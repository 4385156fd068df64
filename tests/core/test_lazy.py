"""Every lazily exported name of the stage packages resolves (a moved definition cannot leave a dangling export)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["nerfstage.capture", "nerfstage.nerf", "nerfstage.render", "nerfstage.export"])
def test_every_lazy_export_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name
