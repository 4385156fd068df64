"""``nerfstage view RUN`` and the ``--viewer`` hook of ``nerfstage train`` (registered in ``cli.py``).

Only typer is imported at module level; the viewer (viser, torch) is imported when a command runs.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_common import Device, RunArg, fills, given, non_negative, positive

ViewCommand = fills("nerfstage.app.viewer.server:ViewerOptions")
"""The command class of ``view`` (its options fill ``ViewerOptions``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str) -> None:
    if not is_loopback(host):
        print(f"warning: the viewer listens on {host}: anyone who can reach this machine can open it and write "
              "files through its buttons; use --host 127.0.0.1 to keep it local", file=sys.stderr)


def view(
    run: RunArg,
    host: Annotated[
        Optional[str], typer.Option(help="Interface to listen on (0.0.0.0 opens it to the network).")
    ] = None,
    port: Annotated[Optional[int], typer.Option(help="Port of the web page.", callback=non_negative)] = None,
    max_height: Annotated[
        Optional[int], typer.Option("--max-height", help="Finest progressive render, pixels high.", callback=positive)
    ] = None,
    camera_path: Annotated[
        Optional[Path], typer.Option("--camera-path", help="Default file of the Save/Load path buttons.")
    ] = None,
    video: Annotated[Optional[Path], typer.Option("--video", help="Default file of the Render video button.")] = None,
    dataset: Annotated[
        Optional[Path], typer.Option("--dataset", help="The run's dataset, if it moved (for the training cameras).")
    ] = None,
    splats: Annotated[Optional[Path], typer.Option(
        "--splats", help="Gaussian splats (.ply/.spz/.glb) shown in real time (default: the run's export/scene.*).")
    ] = None,
    device: Device = "auto",
) -> None:
    """Web viewer of a trained run: look around (its Gaussian splats in real time, when it has them; the field's
    progressive render for the final look), lay out keyframed camera paths, render them (Ctrl-C stops)."""
    from nerfstage.app.viewer.server import (  # heavy: torch (not at CLI start-up)
        ViewerOptions,
        serve_run,
    )

    options = ViewerOptions(**given(host=host, port=port, max_height=max_height, camera_path=camera_path, video=video,
                                    splats=splats))
    warn_if_open(options.host)
    viewer = serve_run(run, options, device=device, dataset=dataset)
    print(f"viewer of {run} at http://{options.host}:{viewer.server.get_port()}  (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(viewer, viewer.stop)


def serve_until_interrupted(viewer, stop) -> None:
    """Block while ``viewer`` serves; Ctrl+C ends it quietly; ``stop()`` runs in every case."""
    try:
        viewer.wait_forever()
    except KeyboardInterrupt:
        print("viewer stopped", file=sys.stderr)
    finally:
        stop()


def training_viewer():
    """The ``callback`` of ``nerfstage train --viewer``: a live viewer (``ViewerOptions``' host and port) started
    at the first training step, rendering smaller images than ``view`` (training shares the cores)."""
    from nerfstage.app.viewer.server import (  # heavy: torch (not at CLI start-up)
        TrainingViewer,
        ViewerOptions,
    )

    options = ViewerOptions(start_height=48, max_height=192)
    warn_if_open(options.host)
    return TrainingViewer(options, on_start=lambda url: print(f"live training viewer at {url}", file=sys.stderr,
                                                               flush=True))


def keep_training_viewer_open(live, metrics: dict) -> None:
    """After ``train --viewer``: keep the viewer serving the finished field (as nerfstudio's viewer does) until
    Ctrl+C, then stop it."""
    if live is None or live.viewer is None:
        return
    live.finish(metrics)
    print(f"training finished; the viewer stays open at {live.viewer.url} (Ctrl+C to exit)", file=sys.stderr,
          flush=True)
    serve_until_interrupted(live.viewer, live.stop)
