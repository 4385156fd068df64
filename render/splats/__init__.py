"""3D Gaussian splats: the representation a trained field is distilled into (``nerfstage export splats``) and
that ``nerfstage render --splats`` and the viewer draw.

:mod:`.model` holds :class:`GaussianSplats` (the tensors, in the conventions of the original 3DGS code so the PLY
layout maps one to one); :mod:`.raster` the differentiable tile rasteriser (C++/OpenMP kernels in
``project_cpu.cpp`` and ``raster_cpu.cpp`` with torch references, gsplat on CUDA); :mod:`.render` frames of any
render camera from splats.
"""
