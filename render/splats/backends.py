"""The optional fast paths of the splat rasteriser, each loaded on first use (never at import): the C++/OpenMP
compositor (``raster_cpu.cpp``), the C++/OpenMP projection (``project_cpu.cpp``) and gsplat (CUDA)."""

from __future__ import annotations

from pathlib import Path

from ...core.native import InlineCpp, inline_extension, optional_module

_FLAGS = {"cflags": ("-O3", "-march=native", "-fopenmp"), "ldflags": ("-fopenmp",)}
CPP = inline_extension("the C++ splat rasteriser", InlineCpp(
    prefix="nerfstage_splat_raster_cpu", source=Path(__file__).with_name("raster_cpu.cpp"),
    functions=("splat_forward", "splat_backward"), **_FLAGS))
PROJECT = inline_extension("the C++ splat projection", InlineCpp(
    prefix="nerfstage_splat_project_cpu", source=Path(__file__).with_name("project_cpu.cpp"),
    functions=("project_forward", "project_backward"), **_FLAGS))
GSPLAT = optional_module("gsplat")
