"""Mesh writers: GLB re-imports with the same vertices, colours and Y-up; OBJ/MTL and PLY round trips; units;
atomic writes and bad paths."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import trimesh

from nerfstage.core.errors import InputError, OutputExistsError
from nerfstage.export.gltf import dataset_from_normalized, read_mesh, srgb_to_linear, write_mesh


@pytest.fixture
def mesh() -> trimesh.Trimesh:
    """A coloured closed mesh (Z-up scene frame) with a vertex straight above the centre at (0, 0, 1)."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    top = int(np.argmax(sphere.vertices[:, 2]))
    sphere.vertices[top] = [0.0, 0.0, 1.0]
    rgb = np.round((sphere.vertices + 1) / 2 * 255)
    sphere.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255)], axis=1).astype(np.uint8)
    return sphere


def glb_json(path) -> dict:
    data = path.read_bytes()
    magic, version, _ = struct.unpack("<4sII", data[:12])
    assert (magic, version) == (b"glTF", 2)
    length, kind = struct.unpack("<II", data[12:20])
    assert kind == 0x4E4F534A  # "JSON"
    return json.loads(data[20 : 20 + length])


def test_glb_reimports_with_same_vertices_colours_and_y_up(mesh, tmp_path):
    path = tmp_path / "scene.glb"
    assert write_mesh(mesh, path) == [path]
    header = glb_json(path)
    assert header["asset"]["version"] == "2.0"
    assert {"POSITION", "NORMAL", "COLOR_0"} <= set(header["meshes"][0]["primitives"][0]["attributes"])
    back = read_mesh(path)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    expected = mesh.vertices[:, [0, 2, 1]] * [1, 1, -1]  # (x, y, z) -> (x, z, -y)
    np.testing.assert_allclose(back.vertices, expected, atol=1e-6)
    top = int(np.argmax(mesh.vertices[:, 2]))
    np.testing.assert_allclose(back.vertices[top], [0.0, 1.0, 0.0], atol=1e-6)  # up (+Z) became +Y
    assert np.all((back.vertex_normals * back.vertices).sum(axis=1) > 0.9)  # stored normals point outward
    colors = back.visual.vertex_colors[:, :3].astype(float)
    assert colors.std(axis=0).min() > 20  # not constant
    linear = srgb_to_linear(mesh.visual.vertex_colors[:, :3] / 255.0) * 255.0  # glTF COLOR_0 is linear
    assert np.abs(colors - linear).max() <= 1.0


def test_scale_multiplies_coordinates(mesh, tmp_path):
    write_mesh(mesh, tmp_path / "big.glb", scale=2.5)
    assert np.abs(read_mesh(tmp_path / "big.glb").vertices).max() == pytest.approx(2.5, rel=1e-6)
    with pytest.raises(InputError, match="scale"):
        write_mesh(mesh, tmp_path / "bad.glb", scale=0.0)


def test_obj_round_trip_y_up_with_vertex_colours(mesh, tmp_path):
    path = tmp_path / "scene.obj"
    written = write_mesh(mesh, path)
    assert written == [path]  # vertex colours live on the v lines; no material
    back = read_mesh(path)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.vertices, mesh.vertices[:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)
    np.testing.assert_array_equal(back.visual.vertex_colors, mesh.visual.vertex_colors)


def test_textured_obj_names_its_texture_after_the_file(mesh, tmp_path):
    from PIL import Image

    uv = (mesh.vertices[:, :2] + 1) / 2
    image = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    textured = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=trimesh.visual.TextureVisuals(uv=uv, image=image))
    written = write_mesh(textured, tmp_path / "tex.obj")
    assert sorted(p.name for p in written) == ["tex.mtl", "tex.obj", "tex_material_0.png"]
    assert "map_Kd tex_material_0.png" in (tmp_path / "tex.mtl").read_text()
    back = read_mesh(tmp_path / "tex.obj")
    assert back.visual.kind == "texture" and np.asarray(back.visual.material.image)[0, 0, 0] == 200


def test_ply_round_trip_keeps_z_up(mesh, tmp_path):
    write_mesh(mesh, tmp_path / "scene.ply")
    back = read_mesh(tmp_path / "scene.ply")
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_array_equal(back.visual.vertex_colors, mesh.visual.vertex_colors)
    write_mesh(mesh, tmp_path / "yup.ply", y_up=True)
    np.testing.assert_allclose(read_mesh(tmp_path / "yup.ply").vertices[:, 1], mesh.vertices[:, 2], atol=1e-6)


def test_bad_extension_existing_output_and_failed_writes_leave_nothing(mesh, tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"unknown mesh extension '\.stl'"):
        write_mesh(mesh, tmp_path / "scene.stl")
    path = tmp_path / "scene.glb"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_mesh(mesh, path)
    assert path.read_bytes() == b"old"
    write_mesh(mesh, path, overwrite=True)
    assert len(read_mesh(path).vertices) == len(mesh.vertices)

    from PIL import Image

    real_replace, calls = os.replace, []

    def replace_then_fail(src, dst):  # the disk fills up after the texture was renamed into place
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    visual = trimesh.visual.TextureVisuals(uv=mesh.vertices[:, :2] % 1, image=Image.new("RGB", (4, 4)))
    textured = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=visual)
    monkeypatch.setattr(os, "replace", replace_then_fail)
    with pytest.raises(InputError, match="cannot write"):
        write_mesh(textured, tmp_path / "new.obj")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.glb"]  # no partial or final files


def test_dataset_from_normalized_inverts_the_dataparser_map():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    transform = np.concatenate([rotation, rng.normal(size=(3, 1))], axis=1)  # [3, 4]
    points = rng.normal(size=(10, 3))
    normalized = 0.3 * (points @ transform[:, :3].T + transform[:, 3])
    back = dataset_from_normalized(transform, 0.3)
    np.testing.assert_allclose(normalized @ back[:3, :3].T + back[:3, 3], points, atol=1e-9)
