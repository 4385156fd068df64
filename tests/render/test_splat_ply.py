"""The 3DGS PLY layout: exact field names and order, and a lossless round trip."""

import numpy as np
import pytest
import torch
from nerfstage.render.splats.model import GaussianSplats
from nerfstage.render.splats.ply import read_ply, write_ply
from plyfile import PlyData

from nerfstage.core.errors import InputError


def random_splats(n: int, degree: int, seed: int = 0) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                          torch.randn(n, 3, generator=g), torch.randn(n, generator=g),
                          torch.randn(n, (degree + 1) ** 2, 3, generator=g))


@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip_is_exact(tmp_path, degree):
    splats = random_splats(50, degree)
    write_ply(tmp_path / "s.ply", splats)
    back = read_ply(tmp_path / "s.ply")
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(back, name), getattr(splats, name)), name


def test_field_names_and_order_are_3dgs(tmp_path):
    splats = random_splats(7, 3)
    write_ply(tmp_path / "s.ply", splats)
    ply = PlyData.read(str(tmp_path / "s.ply"))
    names = [p.name for p in ply["vertex"].properties]
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(45)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert ply.byte_order == "<" and not ply.text
    assert all(p.val_dtype in ("f4", "float32", "float") for p in ply["vertex"].properties)
    # channel-major f_rest: f_rest_0..14 are red's coefficients 1..15, f_rest_15 is green's coefficient 1
    vertex = ply["vertex"]
    assert np.asarray(vertex["f_rest_0"])[3] == splats.sh[3, 1, 0].item()
    assert np.asarray(vertex["f_rest_15"])[3] == splats.sh[3, 1, 1].item()
    assert np.asarray(vertex["rot_0"])[3] == splats.quats[3, 0].item()


def test_a_mesh_ply_is_refused_naming_the_file(tmp_path):
    import trimesh
    trimesh.creation.box().export(tmp_path / "mesh.ply")
    with pytest.raises(InputError, match="mesh.ply: not a 3DGS splat PLY"):
        read_ply(tmp_path / "mesh.ply")
