"""Splat files by extension: SH rotation, SPZ round trip within its quantisation, glTF KHR_gaussian_splatting
checked by the Khronos glTF validator, overwrite and bad-input errors (issue 16)."""

import gzip
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstage.render.splats.io import read_splats, write_splats
from nerfstage.render.splats.model import GaussianSplats
from nerfstage.render.splats.transform import Y_UP_FROM_Z_UP, rotate_splats, sh_colour

from nerfstage.core.errors import InputError, OutputExistsError

VALIDATOR_CACHE = Path.home() / ".cache" / "nerfstage-npm"
VALIDATOR_JS = Path(__file__).with_name("gltf_validate.js")


def random_splats(n: int = 64, degree: int = 3, seed: int = 0) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(means=2.0 * torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
                          log_scales=torch.rand(n, 3, generator=g) * 4.0 - 6.0,
                          opacity_logits=torch.randn(n, generator=g) * 2.0,
                          sh=torch.cat([torch.randn(n, 1, 3, generator=g).clamp(-3, 3), 0.2 * torch.randn(n, (degree + 1) ** 2 - 1,
                                                                                         3, generator=g)], dim=1))


def random_directions(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


def test_y_up_rotation_is_the_mesh_exports():
    from nerfstage.export.gltf import Y_UP_FROM_Z_UP as MESH_Y_UP
    assert np.array_equal(MESH_Y_UP[:3, :3], Y_UP_FROM_Z_UP)


def test_rotating_splats_rotates_their_view_dependent_colour():
    splats = random_splats(200)
    rotation = Y_UP_FROM_Z_UP @ np.array([[0.6, -0.8, 0], [0.8, 0.6, 0], [0, 0, 1.0]])
    out = rotate_splats(splats, rotation)
    d = random_directions(200)
    r = torch.as_tensor(rotation, dtype=torch.float32)
    before = sh_colour(splats.sh, d)
    after = sh_colour(out.sh, d @ r.T)
    assert (after - before).abs().max().item() < 1e-4
    assert torch.allclose(out.means, splats.means @ r.T, atol=1e-6)
    # orientation: R_new = rotation @ R_old
    from nerfstage.render.splats.transform import quat_to_matrix
    assert torch.allclose(quat_to_matrix(out.quats), r @ quat_to_matrix(splats.quats), atol=1e-5)


def band_errors(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Largest per-splat, per-channel error norm within each SH band."""
    return [(a[:, lv * lv:(lv + 1) ** 2] - b[:, lv * lv:(lv + 1) ** 2]).norm(dim=1).max().item()
            for lv in range(round(a.shape[1] ** 0.5))]


@pytest.mark.parametrize("version", [2, 3])
def test_spz_round_trip_within_its_quantisation(tmp_path, version):
    from nerfstage.render.splats.spz import spz_bytes
    splats = random_splats(300)
    path = tmp_path / "s.spz"
    path.write_bytes(spz_bytes(splats, version=version))
    back = read_splats(path)
    assert back.num_splats == 300 and back.sh_degree == 3
    # positions: 12 fractional bits (scene within 2048 units) -> half a step per coordinate
    assert (back.means - splats.means).abs().max().item() <= 0.5 / 4096 + 1e-6
    # log scales: steps of 1/16
    assert (back.log_scales - splats.log_scales).abs().max().item() <= 0.5 / 16 + 1e-6
    # opacity: 8 bits of sigmoid
    assert (torch.sigmoid(back.opacity_logits) - torch.sigmoid(splats.opacity_logits)).abs().max() <= 0.5 / 255 + 1e-6
    # rotation: smallest-three 9 bits (v3) or 8-bit xyz (v2); compare as rotations (q and -q are the same)
    q0 = torch.nn.functional.normalize(splats.quats, dim=-1)
    q1 = torch.nn.functional.normalize(back.quats, dim=-1)
    angle = torch.rad2deg(2 * torch.acos((q1 * q0).sum(-1).abs().clamp(max=1.0)))
    if version == 3:
        assert angle.max().item() < 0.5
    else:  # x y z (w >= 0) in 8 bits each, w derived: sqrt(1 - |xyz|^2) amplifies the step near w = 0 (to
        # sqrt(2 * sqrt(3) / 255) ~ 0.12 in w, ~14 degrees): the reason version 3 exists
        assert angle.max().item() < 14.0 and angle.median().item() < 1.0
    # colour: f_dc in 8 bits over [-3.3, 3.3]; higher SH in 8 bits, rounded to buckets of 8 (degree 1) and 16
    errors = band_errors(back.sh, splats.sh)
    step0 = 1.0 / (0.15 * 255)
    assert errors[0] <= 0.5 * step0 + 1e-5
    for lv, bucket in ((1, 8), (2, 16), (3, 16)):  # a band's error vector is rotated back unchanged in length
        assert errors[lv] <= np.sqrt(2 * lv + 1) * (bucket / 2 + 0.5) / 128 + 1e-5, (lv, errors[lv])


def test_spz_header_is_niantics(tmp_path):
    splats = random_splats(10, degree=1)
    write_splats(tmp_path / "s.spz", splats)
    raw = gzip.decompress((tmp_path / "s.spz").read_bytes())
    magic, version, n, degree, bits, flags, _ = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, degree, bits, flags) == (0x5053474E, 3, 10, 1, 12, 0)
    assert len(raw) == 16 + 10 * (9 + 1 + 3 + 3 + 4 + 9)


def test_spz_refuses_other_files_naming_them(tmp_path):
    (tmp_path / "bad.spz").write_bytes(gzip.compress(b"NOPE" + bytes(40)))
    with pytest.raises(InputError, match="bad.spz: not an SPZ file"):
        read_splats(tmp_path / "bad.spz")
    (tmp_path / "plain.spz").write_bytes(b"hello")
    with pytest.raises(InputError, match="plain.spz: not a readable SPZ file"):
        read_splats(tmp_path / "plain.spz")


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_round_trip(tmp_path, suffix):
    splats = random_splats(50)
    written = write_splats(tmp_path / f"s{suffix}", splats)
    assert written[-1] == tmp_path / f"s{suffix}"
    back = read_splats(tmp_path / f"s{suffix}")
    assert torch.allclose(back.means, splats.means, atol=1e-5)
    assert torch.allclose(back.log_scales, splats.log_scales, atol=1e-5)
    assert torch.allclose(back.opacity_logits, splats.opacity_logits, atol=1e-3)
    assert torch.allclose(back.sh, splats.sh, atol=1e-5)
    q0 = torch.nn.functional.normalize(splats.quats, dim=-1)
    assert ((back.quats * q0).sum(-1).abs() > 1 - 1e-6).all()


def test_gltf_is_y_up_with_extension_attributes(tmp_path):
    import pygltflib
    splats = random_splats(5, degree=2)
    splats.means[:] = torch.tensor([0.0, 0.0, 1.0])  # above the scene: +Z in the dataset frame
    write_splats(tmp_path / "s.glb", splats)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "s.glb"))
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.mode == 0 and gltf.extensionsUsed == ["KHR_gaussian_splatting"]
    ext = primitive.extensions["KHR_gaussian_splatting"]
    assert ext["kernel"] == "ellipse" and ext["colorSpace"] == "srgb_rec709_display"
    names = set(k for k, v in primitive.attributes.__dict__.items() if v is not None)
    assert {"POSITION", "COLOR_0", "KHR_gaussian_splatting:ROTATION", "KHR_gaussian_splatting:SCALE",
            "KHR_gaussian_splatting:OPACITY", "KHR_gaussian_splatting:SH_DEGREE_2_COEF_4"} <= names
    assert "KHR_gaussian_splatting:SH_DEGREE_3_COEF_0" not in names
    position = gltf.accessors[primitive.attributes.POSITION]
    assert position.max == pytest.approx([0.0, 1.0, 0.0])  # +Z up became +Y up


def npm_module(name: str) -> Path:
    """The npm package ``name``, installed once into a cache folder; skips without node/npm (fails under CI)."""
    module = VALIDATOR_CACHE / "node_modules" / name
    if shutil.which("node") is None or (not module.exists() and shutil.which("npm") is None):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"node and npm are needed for {name} under CI=true")
        pytest.skip(f"node/npm not installed: cannot run {name}")
    if not module.exists():
        subprocess.run(["npm", "install", "--silent", "--prefix", str(VALIDATOR_CACHE), name],
                       check=True, timeout=300, capture_output=True)
    return module


def validate(path: Path) -> dict:
    out = subprocess.run(["node", str(VALIDATOR_JS), str(npm_module("gltf-validator")), str(path)], check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def spz_js(source: Path, target: Path) -> None:
    """Convert SPZ <-> PLY with the npm package spz-js (an independent implementation of SPZ version 2)."""
    subprocess.run(["node", str(Path(__file__).with_name("spz_js_convert.mjs")), str(npm_module("spz-js")),
                    str(source), str(target)], check=True, capture_output=True, text=True, timeout=120)


def test_spz_interoperates_with_an_independent_implementation(tmp_path):
    """Our SPZ (version 2) read by spz-js and written back as a 3DGS PLY holds the splats in SPZ's Y-up frame
    within the quantisation; a PLY of Y-up splats packed by spz-js reads back into our dataset frame."""
    from nerfstage.render.splats.ply import read_ply, write_ply
    from nerfstage.render.splats.spz import spz_bytes

    splats = random_splats(100)
    y_up = rotate_splats(splats, Y_UP_FROM_Z_UP)
    (tmp_path / "ours.spz").write_bytes(spz_bytes(splats, version=2))
    spz_js(tmp_path / "ours.spz", tmp_path / "theirs.ply")
    theirs = read_ply(tmp_path / "theirs.ply")
    write_ply(tmp_path / "y_up.ply", y_up)
    spz_js(tmp_path / "y_up.ply", tmp_path / "theirs.spz")
    back = read_splats(tmp_path / "theirs.spz")
    for got, want in ((theirs, y_up), (back, splats)):
        assert (got.means - want.means).abs().max() <= 0.5 / 4096 + 1e-6
        assert (got.log_scales - want.log_scales).abs().max() <= 0.5 / 16 + 1e-6
        assert (got.sh[:, 0] - want.sh[:, 0]).abs().max() <= 0.5 / (0.15 * 255) + 1e-5
        assert (torch.sigmoid(got.opacity_logits) - torch.sigmoid(want.opacity_logits)).abs().max() <= 0.5 / 255 + 1e-6
    assert (theirs.sh[:, 1:] - y_up.sh[:, 1:]).abs().max() <= (16 / 2 + 0.5) / 128 + 1e-5  # same frame: per value


# The validator (npm gltf-validator 2.0.0-dev.3.10, the latest) predates extension-prefixed attribute semantics
# ("KHR_gaussian_splatting:SCALE"; glTF PR 2514) and reports each as MESH_PRIMITIVE_INVALID_ATTRIBUTE:
# KhronosGroup/glTF-Validator issue 252. Only that code, on exactly those attributes, is tolerated.
KNOWN_VALIDATOR_GAP = "MESH_PRIMITIVE_INVALID_ATTRIBUTE"


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_khronos_validator_finds_no_errors(tmp_path, suffix):
    path = tmp_path / f"scene{suffix}"
    write_splats(path, random_splats(40))
    report = validate(path)
    errors = [m for m in report["issues"]["messages"] if m["severity"] == 0]
    other = [m for m in errors if not (m["code"] == KNOWN_VALIDATOR_GAP
                                       and "/attributes/KHR_gaussian_splatting:" in m["pointer"])]
    assert other == [], other
    assert len(errors) == 3 + 16  # ROTATION, SCALE, OPACITY and the 16 SH coefficients: issue 252 only
    assert report["issues"]["numWarnings"] == 0
    info = report["info"]
    assert info["totalVertexCount"] == 40 or info.get("drawCallCount", 1) == 1


def test_ply_by_extension_keeps_the_3dgs_layout(tmp_path):
    from plyfile import PlyData
    write_splats(tmp_path / "s.ply", random_splats(8))
    names = [p.name for p in PlyData.read(str(tmp_path / "s.ply"))["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len(names) == 62


def test_existing_files_are_kept_without_overwrite(tmp_path):
    for suffix in (".ply", ".spz", ".glb", ".gltf"):
        path = tmp_path / f"s{suffix}"
        path.write_bytes(b"mine")
        with pytest.raises(OutputExistsError, match="--overwrite"):
            write_splats(path, random_splats(4))
        assert path.read_bytes() == b"mine"
        write_splats(path, random_splats(4), overwrite=True)
        assert read_splats(path).num_splats == 4
    assert not list(tmp_path.glob(".*partial*"))


def test_unknown_extension_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match=r"s\.obj: unknown splat file extension '\.obj'"):
        write_splats(tmp_path / "s.obj", random_splats(4))
    with pytest.raises(InputError, match="nope.spz: no such splat file"):
        read_splats(tmp_path / "nope.spz")
