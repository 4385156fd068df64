"""Splats in the viewer without a browser: found beside the run, mapped into the run's normalised frame
(centres and covariances), shown first with the field's render as the toggle, keyframes work either way."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from nerfstage.render.splats.io import write_splats
from nerfstage.render.splats.model import GaussianSplats


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def two_splats() -> GaussianSplats:
    """Two splats (dataset frame): an axis-aligned one and one turned 90 degrees about z."""
    half = float(np.sqrt(0.5))
    return GaussianSplats(means=torch.tensor([[0.1, 0.2, 0.3], [-0.5, 0.0, 1.0]]),
                          quats=torch.tensor([[1.0, 0, 0, 0], [half, 0, 0, half]]),
                          log_scales=torch.log(torch.tensor([[0.1, 0.02, 0.05], [0.1, 0.02, 0.05]])),
                          opacity_logits=torch.tensor([0.0, 2.0]), sh=torch.zeros(2, 16, 3))


def test_splats_map_into_the_runs_normalised_frame(loaded, tmp_path):
    from nerfstage.app.viewer.splats import viser_splats

    write_splats(tmp_path / "s.ply", two_splats())
    arrays = viser_splats(tmp_path / "s.ply", loaded)
    m = float(loaded.scene.scale) * np.asarray(loaded.scene.transform).reshape(3, 4)
    expected = two_splats().means.double().numpy() @ m[:, :3].T + m[:, 3]
    np.testing.assert_allclose(arrays["centers"], expected, rtol=1e-5, atol=1e-6)
    s = float(loaded.scene.scale)
    r = m[:, :3] / s
    for i, local in enumerate((np.diag([0.1, 0.02, 0.05]) ** 2,
                               np.diag([0.02, 0.1, 0.05]) ** 2)):  # turned 90 degrees: x and y swap
        np.testing.assert_allclose(arrays["covariances"][i], s * s * r @ local @ r.T, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(arrays["rgbs"], 0.5)  # SH all zero: 0.5 from every side
    np.testing.assert_allclose(arrays["opacities"][:, 0], [0.5, 1 / (1 + np.exp(-2.0))], rtol=1e-6)
    lit = two_splats()
    lit.sh[:, 1, :] = 0.2  # Y_1 = -0.4886 y: seen head-on against the thinnest axis (local y)
    write_splats(tmp_path / "lit.ply", lit)
    rgbs = viser_splats(tmp_path / "lit.ply", loaded)["rgbs"]
    np.testing.assert_allclose(rgbs[0], 0.5 + 0.2 * 0.48860251, rtol=1e-5)  # normal +y, seen along -y
    np.testing.assert_allclose(rgbs[1], 0.5, atol=1e-6)  # normal -x after the turn: seen along +x, y = 0


def test_find_splats_beside_or_inside_the_run(tmp_path):
    from nerfstage.app.viewer.splats import find_splats

    run = tmp_path / "work" / "run"
    run.mkdir(parents=True)
    assert find_splats(run) is None
    (tmp_path / "work" / "export").mkdir()
    write_splats(tmp_path / "work" / "export" / "scene.spz", two_splats())
    assert find_splats(run) == tmp_path / "work" / "export" / "scene.spz"
    write_splats(tmp_path / "work" / "export" / "scene.ply", two_splats())
    assert find_splats(run) == tmp_path / "work" / "export" / "scene.ply"


def test_viewer_shows_splats_first_and_toggles_to_the_field(tiny_run, tmp_path):
    from nerfstage.app.viewer.server import ViewerOptions, serve_run
    from nerfstage.app.viewer.splats import NERF_MODE, SPLATS_MODE

    write_splats(tmp_path / "scene.ply", two_splats())
    viewer = serve_run(tiny_run.run_dir, ViewerOptions(port=free_port(), max_height=64, splats=tmp_path / "scene.ply"),
                       device="cpu")
    try:
        assert viewer.splats is not None and viewer.splat_count == 2
        assert viewer.splats.visible and not viewer.live and not viewer.gui.live.value
        assert viewer.gui.display.value == SPLATS_MODE
        viewer.set_display(NERF_MODE)
        assert viewer.live and not viewer.splats.visible
        viewer.set_display(SPLATS_MODE)
        assert not viewer.live and viewer.splats.visible
        viewer.editor.add(viewer.run.world_from_cams[0], 50.0)
        viewer.editor.add(viewer.run.world_from_cams[5], 50.0)
        assert len(viewer.editor) == 2
    finally:
        viewer.stop()
    plain = serve_run(tiny_run.run_dir, ViewerOptions(port=free_port(), max_height=64), device="cpu")
    try:  # the tiny run has no export/ folder: no splats, the field's render as before
        assert plain.splats is None and plain.gui.display is None and plain.live
    finally:
        plain.stop()
