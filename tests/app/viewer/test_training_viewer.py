"""``nerfstage train --viewer``: the live viewer started by the training callback shows the field improving
while steps run (rendered between steps under the trainer's ``model_lock``)."""

from __future__ import annotations

import math
import socket

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_config(steps: int):
    from nerfstage.nerf.config import ModelConfig, TrainConfig
    from nerfstage.nerf.encoding import HashGridConfig

    model = ModelConfig(encoding=HashGridConfig(num_levels=8, log2_hashmap_size=14, max_resolution=128),
                        hidden_dim=32, hidden_dim_color=32, appearance_dim=0, occupancy_resolution=16,
                        occupancy_warmup_steps=32, occupancy_update_every=4, render_step_size=0.05)
    return TrainConfig(steps=steps, batch_rays=512, target_samples=0, lr_warmup_steps=5, checkpoint_every=100000,
                       unbounded_cascades=2, num_threads=2, device="cpu", seed=0, model=model)


def test_live_view_improves_while_training(tiny_run, tmp_path, monkeypatch, capsys):
    import imageio.v3 as iio

    from nerfstage.capture.loader import load_dataset
    from nerfstage.app.cli_view import keep_training_viewer_open
    from nerfstage.nerf.trainer import train
    from nerfstage.app.viewer import View
    from nerfstage.app.viewer.server import TrainingViewer, ViewerOptions

    frame = load_dataset(tiny_run.dataset_dir).frames[1]
    truth = iio.imread(frame.image_path)[..., :3].astype(np.float32) / 255.0  # [48, 64, 3]
    intr = frame.intrinsics
    live = TrainingViewer(ViewerOptions(port=free_port()), refresh_s=0.0)
    psnr: dict[int, float] = {}

    def callback(info) -> None:
        live(info)
        if info.step in (1, 15):
            pose = info.trainer.scene.apply(np.asarray(frame.world_from_cam)[None])[0]
            fov = math.degrees(2.0 * math.atan(intr.height / (2.0 * intr.fy)))
            rgb = live.viewer.render_fn(View(pose, fov, intr.width / intr.height), intr.width, intr.height,
                                        lambda: False)
            psnr[info.step] = -10.0 * math.log10(float(np.mean((rgb - truth) ** 2)))
            assert info.trainer.model.training  # the live render gave the model back in training mode

    try:
        train(tiny_run.dataset_dir, tmp_path / "run", small_config(15), progress=False, callback=callback)
        assert live.viewer is not None and live.viewer.url.startswith("http://127.0.0.1:")
        assert "Training step 15/15" in live.viewer.gui.training.content
        shown = []

        def interrupted(*args, **kwargs):  # Ctrl+C while the finished run is being looked at
            shown.append(live.viewer.gui.training.content)
            raise KeyboardInterrupt

        monkeypatch.setattr(live.viewer, "wait_forever", interrupted)
        keep_training_viewer_open(live, {"steps": 15, "psnr": 12.345})
        assert shown == ["Training finished: 15 steps, held-out PSNR 12.35 dB"]
        assert "stays open at http://127.0.0.1:" in capsys.readouterr().err and live.viewer is None  # stopped
    finally:
        live.stop()
    print(f"live view PSNR vs the training image: {psnr}")
    assert psnr[15] > psnr[1] + 2.0, psnr
