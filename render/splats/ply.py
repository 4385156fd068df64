"""The original 3D Gaussian Splatting PLY layout (what Unreal, Unity, Blender add-ons, SuperSplat and viewers read).

One ``vertex`` element, binary little-endian float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3

``f_rest`` is channel-major (all of red's higher-order coefficients, then green's, then blue's), ``opacity`` is
the logit, ``scale_*`` the natural log of the standard deviations, ``rot_*`` the quaternion w, x, y, z; normals
are written as zeros (3DGS does the same). Frame, units and colour space: :mod:`.model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from ...core.errors import InputError
from .model import GaussianSplats


def ply_field_names(sh_degree: int) -> list[str]:
    """The vertex properties, in file order, of a 3DGS PLY with SH of ``sh_degree``."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def splats_to_ply_array(splats: GaussianSplats) -> np.ndarray:
    """The splats as a structured float32 array in 3DGS PLY order ([n] records)."""
    s = splats.detach().to("cpu")
    n, k = s.num_splats, s.sh.shape[1]
    sh = s.sh.float().numpy()  # [n, k, 3]
    columns = [s.means.float().numpy(), np.zeros((n, 3), np.float32), sh[:, 0, :],
               sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),
               s.opacity_logits.float().numpy()[:, None], s.log_scales.float().numpy(), s.quats.float().numpy()]
    flat = np.concatenate(columns, axis=1).astype(np.float32)
    names = ply_field_names(s.sh_degree)
    out = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        out[name] = flat[:, i]
    return out


def write_ply(path: Path, splats: GaussianSplats) -> None:
    """Write ``splats`` to ``path`` (binary little-endian 3DGS layout); ``path``'s folder must exist."""
    element = PlyElement.describe(splats_to_ply_array(splats), "vertex")
    PlyData([element], byte_order="<").write(str(path))


def read_ply(path: Path) -> GaussianSplats:
    """Read a 3DGS PLY (any SH degree 0..3); raises :class:`InputError` naming the file when it is not one."""
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except (OSError, ValueError, KeyError, IndexError, PlyParseError) as exc:
        raise InputError(f"{path}: not a readable Gaussian-splat PLY ({exc})") from exc
    names = [p.name for p in vertex.properties]
    rest = sum(1 for name in names if name.startswith("f_rest_"))
    degree = {0: 0, 9: 1, 24: 2, 45: 3}.get(rest)
    if degree is None or names != ply_field_names(degree):
        missing = [name for name in ply_field_names(3 if degree is None else degree) if name not in names]
        what = f"missing {', '.join(missing[:4])}" if missing else f"{rest} f_rest_* properties"
        raise InputError(f"{path}: not a 3DGS splat PLY ({what}); expected x y z nx ny nz f_dc_* f_rest_* "
                         "opacity scale_* rot_*")
    data = np.stack([np.asarray(vertex[name], dtype=np.float32) for name in names], axis=1)  # [n, fields]
    if not np.isfinite(data).all():
        raise InputError(f"{path}: holds NaN or infinite values")
    n, k = data.shape[0], (degree + 1) ** 2
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = data[:, 6:9]
    sh[:, 1:, :] = data[:, 9:9 + 3 * (k - 1)].reshape(n, 3, k - 1).transpose(0, 2, 1)
    tail = data[:, 9 + 3 * (k - 1):]
    t = torch.from_numpy
    return GaussianSplats(means=t(data[:, 0:3].copy()), quats=t(tail[:, 4:8].copy()),
                          log_scales=t(tail[:, 1:4].copy()), opacity_logits=t(tail[:, 0].copy()), sh=t(sh))
