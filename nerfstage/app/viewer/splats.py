"""Gaussian splats in the viewer: drawn by the browser in real time (viser's ``add_gaussian_splats``), with the
field's progressive render as the toggle for the final look.

A run's splats are ``--splats FILE`` or the ``export/scene.{ply,spz,glb}`` that ``nerfstage run`` writes next to
the run folder (``WORKDIR/run`` -> ``WORKDIR/export``) or inside it. Splat files are in the dataset frame; the
viewer works in the run's normalised frame, so centres and covariances are mapped with the dataparser transform
(``normalized = scale * (R p + t)``). viser draws one colour per splat: its SH colour seen head-on, looking
against the splat's thinnest axis (the surface normal of splats placed from the field; the full view-dependent
colour is the NeRF toggle's job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...nerf.run import LoadedRun
from ...render.splats.io import SPLAT_SUFFIXES, read_splats
from ...render.splats.transform import quat_to_matrix, sh_colour

SPLATS_MODE, NERF_MODE = "Splats (real time)", "NeRF (final look)"
"""What the viewer shows when it has splats: the browser's splat renderer, or the field's progressive render."""


def find_splats(run_dir: Path) -> Path | None:
    """``export/scene.(ply|spz|glb|gltf)`` beside or inside the run folder (ply first), or None."""
    run_dir = Path(run_dir)
    for folder in (run_dir.parent / "export", run_dir / "export"):
        for suffix in SPLAT_SUFFIXES:
            candidate = folder / f"scene{suffix}"
            if candidate.is_file():
                return candidate
    return None


def normalized_from_dataset(run: LoadedRun) -> np.ndarray:
    """[3, 4] ``scale * [R | t]``: dataset frame -> the run's normalised frame."""
    return float(run.scene.scale) * np.asarray(run.scene.transform, dtype=np.float64).reshape(3, 4)


def viser_splats(path: Path, run: LoadedRun) -> dict[str, np.ndarray]:
    """The arguments of ``add_gaussian_splats`` for the splats in ``path``, in the run's normalised frame:
    ``centers`` [n, 3], ``covariances`` [n, 3, 3], ``rgbs`` [n, 3] in [0, 1], ``opacities`` [n, 1]."""
    splats = read_splats(path)
    m = normalized_from_dataset(run)
    linear = m[:, :3]  # [3, 3]
    rotation = quat_to_matrix(splats.quats).double().numpy()  # [n, 3, 3]
    scales = np.exp(splats.log_scales.double().numpy())  # [n, 3]
    axes = linear[None] @ rotation * scales[:, None, :]  # [n, 3, 3]: columns = scaled local axes, normalised frame
    thinnest = np.argmin(scales, axis=1)  # [n]
    normals = torch.from_numpy(rotation[np.arange(len(scales)), :, thinnest]).float()  # [n, 3] dataset frame
    rgbs = np.clip(sh_colour(splats.sh, -normals).double().numpy(), 0.0, 1.0)
    opacities = 1.0 / (1.0 + np.exp(-splats.opacity_logits.double().numpy()))
    return {"centers": (splats.means.double().numpy() @ linear.T + m[:, 3]).astype(np.float32),
            "covariances": (axes @ axes.transpose(0, 2, 1)).astype(np.float32),
            "rgbs": rgbs.astype(np.float32), "opacities": opacities[:, None].astype(np.float32)}


def add_splats(server, path: Path, run: LoadedRun):
    """Add the splats of ``path`` to ``server``'s scene (returns the handle: ``.visible`` toggles them)."""
    return server.scene.add_gaussian_splats("/splats", **viser_splats(path, run))
