"""The one ``nerfstage`` command. Thin: parses options, calls library code, turns errors into one line.

Nothing heavy is imported at module level, so ``nerfstage --help`` never imports torch. Exit codes: 0 ok,
2 bad input (``nerfstage.errors.InputError``), 1 internal failure.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import ConfigError, DatasetError, Interrupted, NerfstageError
from ..core.lock import output_lock
from ..core.presets import DEFAULT_PRESET, DEMO_PRESET, PRESET_NAMES
from ..core.version import __version__
from .cli_farm import remember_argv
from .cli_common import (
    MAX_NPROC,
    MEMORY_GB,
    CameraPath,
    ChainNproc,
    Center,
    Device,
    Ease,
    FocusDistance,
    Fov,
    FovEnd,
    Fps,
    Frames,
    MaxRaysPerChunk,
    MemoryGb,
    OrbitHeight,
    Quiet,
    Radius,
    RedoStages,
    RunArg,
    Seconds,
    Seed,
    Shard,
    Smoothing,
    Turns,
    Width,
    command_scope,
    fills,
    flag_message,
    given,
    lowered,
    memory_bytes,
    new_app,
    non_negative,
    numbers,
    positive,
    shard_note,
    shard_spec,
)

PRESETS_HELP = " | ".join(PRESET_NAMES)
app = new_app("nerfstage", "Phone video -> radiance field -> fly-throughs, meshes and LED-wall plates.")


def _print_version(value: bool) -> None:
    if value:
        print(f"nerfstage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Phone video -> radiance field -> fly-throughs, meshes and LED-wall plates."""


def _fail(err: NerfstageError) -> None:
    """The one place that prints an error: one line, a field named as the flag that sets it, exit code."""
    kind = "" if isinstance(err, Interrupted) else "error: "
    print(f"nerfstage: {kind}{flag_message(err)}", file=sys.stderr)
    raise SystemExit(err.exit_code)


USER_PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                              errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.EXDEV})
"""Operating-system errors caused by the paths the user gave or the disk they point to: exit code 2."""


def _fail_os(err: OSError) -> None:
    """An operating-system error that escaped the library: one line naming the path(s) and the cause."""
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    cause = err.strerror or type(err).__name__
    where = " -> ".join(paths)
    print(f"nerfstage: error: {where}: {cause}" if where else f"nerfstage: error: {cause}", file=sys.stderr)
    raise SystemExit(2 if err.errno in USER_PATH_ERRNOS else 1)


@app.command(cls=fills("nerfstage.capture.pipeline:CaptureOptions", colmap="colmap_model", images="colmap_images",
                      match_budget="match_budget_s"))
def capture(
    input: Annotated[
        Optional[Path], typer.Argument(help="A video file, or a folder of images (omit with --colmap).")
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder to write.")] = ...,
    frames: Annotated[
        Optional[int], typer.Option(help="Target number of frames taken from a video.", callback=positive)
    ] = None,
    max_size: Annotated[
        Optional[int], typer.Option("--max-size", help="Longest image side, pixels.", callback=positive)
    ] = None,
    matcher: Annotated[Optional[str], typer.Option(help="auto | sequential | exhaustive.")] = None,
    match_budget: Annotated[
        Optional[float], typer.Option("--match-budget", help="auto, photos: seconds exhaustive matching may take "
                                      "before retrieval pairs are used instead.", callback=positive)
    ] = None,
    mapper: Annotated[Optional[str], typer.Option(help="incremental | global.")] = None,
    camera_model: Annotated[
        Optional[str], typer.Option("--camera-model", help="SIMPLE_RADIAL | OPENCV | PINHOLE | OPENCV_FISHEYE.")
    ] = None,
    loop_every: Annotated[Optional[int], typer.Option(
        "--loop-every", help="Sequential/retrieval matching: loop-closing pass on frame gaps multiple of N (0 = off).",
        callback=non_negative)] = None,
    seed: Seed = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
    colmap: Annotated[
        Optional[Path], typer.Option("--colmap", help="Convert this COLMAP model (sparse/0) instead of running SfM.")
    ] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image folder of the --colmap model.")] = None,
    keep_database: Annotated[
        bool, typer.Option("--keep-database", help="Keep COLMAP's database.db in DATASET/colmap/.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Phone video, photo folder or COLMAP model -> posed dataset (nerfstudio transforms.json)."""
    from nerfstage.capture.pipeline import (  # heavy: torch (not at CLI start-up)
        CaptureOptions,
        run_capture,
    )

    if colmap is not None and images is None and input is not None:
        input, images = None, input
    options = CaptureOptions(**given(
        frames=frames,
        max_size=max_size,
        matcher=lowered(matcher),
        match_budget_s=match_budget,
        mapper=lowered(mapper),
        camera_model=None if camera_model is None else camera_model.upper(),
        seed=seed,
        colmap_model=colmap,
        colmap_images=images,
        loop_every=loop_every,
    ), overwrite=overwrite, keep_database=keep_database, progress=not quiet)
    with output_lock(output):
        result = run_capture(input, output, options)
    report = result.report
    error = report["mean_reprojection_error_px"]
    print(
        f"registered {report['frames_registered']}/{report['frames_selected']} frames, "
        f"mean reprojection error {error:.3f} px, {report['seconds']['total']:.1f} s -> {result.dataset_dir}"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


@app.command()
def train(
    dataset: Annotated[
        Optional[Path], typer.Argument(help="Dataset: transforms.json folder, Blender splits or COLMAP model.")
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder to write.")] = ...,
    preset: Annotated[str, typer.Option(help=f"{PRESETS_HELP} (sized for the device).")] = DEFAULT_PRESET,
    steps: Annotated[
        Optional[int], typer.Option(help="Training steps (overrides the preset).", callback=positive)
    ] = None,
    time_budget: Annotated[
        Optional[float], typer.Option("--time-budget", help="Stop training after this many seconds.", callback=positive)
    ] = None,
    device: Device = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in OUTPUT from its newest checkpoint.")
    ] = False,
    eval_every: Annotated[
        Optional[int], typer.Option("--eval-every", help="Log a held-out view's PSNR every N steps (0 = off).",
                                    callback=non_negative)
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random step.", callback=non_negative)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    quiet: Quiet = False,
    pose_refinement: Annotated[
        Optional[str], typer.Option("--pose-refinement", help="off | SO3xR3: refine the training cameras' poses.")
    ] = None,
    scene_centre: Annotated[Optional[str], typer.Option(
        "--scene-centre", help="Real captures: auto | focus (where the cameras look) | poses (mean camera position)."
    )] = None,
    viewer: Annotated[bool, typer.Option(
        "--viewer", help="Watch training live at http://127.0.0.1:7007; stays open afterwards until Ctrl+C.")] = False,
    nproc: Annotated[Optional[int], typer.Option(
        "--nproc", help="Data-parallel on N processes of this machine (torch.distributed.run; gloo on CPU, NCCL on "
        "CUDA); the batch is the whole job's. Clusters: torchrun ... -m nerfstage train.")] = None,
) -> None:
    """Train a hash-grid radiance field on DATASET into the run folder OUTPUT (RUN/metrics.json at the end)."""
    from nerfstage.nerf.config import build_config  # heavy: torch (not at CLI start-up)
    from nerfstage.core.shards import world_from_env  # light, but kept out of CLI start-up
    from nerfstage.nerf.trainer import train as run_training  # heavy: torch (not at CLI start-up)

    relaunch_nproc(nproc)
    callback = training_viewer() if viewer else None
    given = {"steps": steps, "time_budget_s": time_budget, "eval_every": eval_every, "seed": seed,
             "pose_refinement": pose_refinement}
    overrides = {k: v for k, v in given.items() if v is not None} | {"device": device}
    if resume:
        if scene_centre is not None:
            raise ConfigError("--scene-centre cannot change when resuming: the run keeps its "
                              "dataparser_transforms.json")
        metrics = run_training(dataset, output, resume=True, resume_overrides=overrides, progress=not quiet,
                               callback=callback)
    else:
        if dataset is None:
            raise DatasetError("missing DATASET: give the dataset folder to train on (or --resume a run)")
        config = build_config(preset, **overrides)
        if scene_centre is not None:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, scene_centre=scene_centre))
        metrics = run_training(dataset, output, config, overwrite=overwrite, progress=not quiet, callback=callback)
    if world_from_env()[0] != 0:
        return
    print(
        f"{metrics['split']} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on {metrics['eval_views']} "
        f"views; {metrics['steps']} steps in {metrics['train_seconds']:.0f} s on {metrics['device']} "
        f"({metrics['samples_per_second']:.0f} samples/s) -> {output}"
    )
    keep_training_viewer_open(callback, metrics)


@app.command("eval")
def eval_(
    run: RunArg,
    save_images: Annotated[
        Optional[Path], typer.Option("--save-images", help="Write renders and ground-truth|render PNGs here.")
    ] = None,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Re-compute RUN/metrics.json (held-out PSNR / SSIM) from the run's newest checkpoint."""
    from nerfstage.nerf.evaluate import evaluate_run  # heavy: torch (not at CLI start-up)

    metrics = evaluate_run(run, save_images=save_images, device=device, progress=not quiet)
    print(f"{metrics['split']} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on "
          f"{metrics['eval_views']} views (step {metrics['steps']}) -> {run / 'metrics.json'}")


def relaunch_nproc(nproc: Optional[int]) -> None:
    """``--nproc N`` (N > 1, outside torchrun): run this command line on N local processes under
    torch.distributed.run and exit with its code; ConfigError for N outside 1..MAX_NPROC."""
    from nerfstage.core.shards import world_from_env  # light, but kept out of CLI start-up

    if nproc is not None and not 1 <= nproc <= MAX_NPROC:
        raise ConfigError(f"--nproc {nproc}: expected 1 to {MAX_NPROC} processes")
    if nproc is not None and nproc > 1 and world_from_env()[1] == 1:
        from .cli_farm import launch_nproc  # heavy: torch.distributed.run (only for --nproc)

        raise SystemExit(launch_nproc(nproc, "--nproc"))


@contextmanager
def chain_lock(output: Path) -> Iterator[bool]:
    """The work folder's lock for ``run`` / ``demo``: the whole folder on rank 0 (the only process outside
    torchrun), a rank's own part on the others (they work in rank 0's folder); yields whether this is rank 0."""
    from nerfstage.core.shards import world_from_env  # light, but kept out of CLI start-up

    rank, world = world_from_env()
    with output_lock(output, None if rank == 0 else f"rank{rank}of{world}"):
        yield rank == 0


@app.command("run")
def run_(
    input: Annotated[Path, typer.Argument(help="A phone video or a folder of photos.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Work folder for every output.")] = ...,
    preset: Annotated[str, typer.Option(help=f"{PRESETS_HELP}.")] = DEFAULT_PRESET,
    frames: Annotated[
        Optional[int], typer.Option(help="Frames taken from a video (overrides the preset).", callback=positive)
    ] = None,
    splat_format: Annotated[Optional[str], typer.Option(
        "--splat-format", help="Gaussian splats as export/scene.ply (3DGS) | spz | glb.")] = None,
    seed: Seed = None,
    device: Device = "auto",
    overwrite: RedoStages = False,
    quiet: Quiet = False,
    nproc: ChainNproc = None,
) -> None:
    """The whole chain: capture -> train -> orbit and dolly-zoom MP4s -> GLB mesh, Gaussian splats, EXR plate and
    cubemap, with summary.json and report.html. Valid outputs of an earlier run are kept, so an interrupted run
    continues."""
    from nerfstage.app.chain import (  # heavy: torch (not at CLI start-up)
        chain_options,
        run_chain,
        summary_lines,
    )

    relaunch_nproc(nproc)
    options = chain_options(preset, frames=frames, splat_format=lowered(splat_format), seed=seed, device=device,
                            overwrite=overwrite, progress=not quiet)
    with chain_lock(output) as main_rank:
        summary = run_chain(input, output, options)
        if main_rank:
            print("\n".join(summary_lines(summary)))


@app.command()
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Work folder for every output.")] = Path("demo_out"),
    preset: Annotated[str, typer.Option(
        help=f"{PRESETS_HELP} (the demo's default, {DEMO_PRESET}, runs the whole chain in minutes on 2 CPU cores)."
    )] = DEMO_PRESET,
    frames: Annotated[
        Optional[int], typer.Option(help="Frames of synthetic footage (overrides the preset).", callback=positive)
    ] = None,
    seed: Seed = None,
    device: Device = "auto",
    overwrite: RedoStages = False,
    quiet: Quiet = False,
    nproc: ChainNproc = None,
) -> None:
    """`nerfstage run` on the built-in synthetic capture, plus the capture's pose error against the truth."""
    from nerfstage.app.chain import (  # heavy: torch (not at CLI start-up)
        chain_options,
        run_demo,
        summary_lines,
    )

    relaunch_nproc(nproc)
    options = chain_options(preset, frames=frames, seed=seed, device=device, overwrite=overwrite, progress=not quiet)
    with chain_lock(output) as main_rank:
        summary = run_demo(output, options)
        if main_rank:
            print("\n".join(summary_lines(summary)))


@app.command(cls=fills("nerfstage.render.pipeline:RenderOptions", "nerfstage.render.plan:ShotOptions",
                      what="output", orbit_height="height_above", memory_gb=MEMORY_GB))
def render(
    run: RunArg,
    output_file: Annotated[
        Optional[Path], typer.Option("-o", "--output-file", help="OUT.mp4 (H.264) or a folder for numbered frames.")
    ] = None,
    path: CameraPath = None,
    save_path: Annotated[
        Optional[Path], typer.Option("--save-path", help="Also save the path as a nerfstudio camera_path.json.")
    ] = None,
    camera: Annotated[
        Optional[str], typer.Option(help="perspective | fisheye | equirectangular | cubemap | orthographic.")
    ] = None,
    width: Width = None,
    height: Annotated[
        Optional[int], typer.Option(help="Frame height, pixels (cubemap cross: 3 x face size).", callback=positive)
    ] = None,
    fps: Fps = None,
    seconds: Seconds = None,
    fov: Fov = None,
    what: Annotated[Optional[str], typer.Option("--output", help="rgb | depth | alpha | normal.")] = None,
    frame_format: Annotated[
        Optional[str], typer.Option("--format", help="Frames in a folder: png | exr | npy.")
    ] = None,
    half: Annotated[bool, typer.Option("--half", help="EXR frames as half floats.")] = False,
    max_rays_per_chunk: MaxRaysPerChunk = None,
    memory_gb: MemoryGb = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip frames already written and valid.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    device: Device = "auto",
    center: Center = None,
    radius: Radius = None,
    orbit_height: OrbitHeight = None,
    turns: Turns = None,
    focus_distance: FocusDistance = None,
    fov_end: FovEnd = None,
    aperture: Annotated[
        Optional[float], typer.Option(help="Thin-lens aperture radius (0 = pinhole).", callback=non_negative)
    ] = None,
    lens_samples: Annotated[
        Optional[int], typer.Option("--lens-samples", help="Lens samples per pixel (DOF).", callback=positive)
    ] = None,
    ease: Ease = None,
    cubemap_layout: Annotated[Optional[str], typer.Option("--cubemap-layout", help="cross | strip | six.")] = None,
    smoothing: Smoothing = None,
    splats: Annotated[Optional[Path], typer.Option(
        "--splats", help="Render from these Gaussian splats (.ply 3DGS layout, .spz, .glb/.gltf) instead of the "
                         "field.")] = None,
    frames: Frames = None,
    shard: Shard = None,
    quiet: Quiet = False,
) -> None:
    """Fly a virtual camera through a trained run: MP4, PNG/EXR/NPY frames, 360 plates, camera_path.json."""
    from nerfstage.nerf.run import load_run  # heavy: torch (not at CLI start-up)
    from nerfstage.render.pipeline import RenderOptions, check_options, render_path  # heavy: torch (not at start-up)
    from nerfstage.render.pipeline import save_path as write_path  # heavy: torch (not at CLI start-up)
    from nerfstage.core.shards import bind_local_device  # light, but kept out of CLI start-up
    from nerfstage.render.plan import ShotOptions  # heavy: torch (not at CLI start-up)

    if output_file is None and save_path is None:
        raise ConfigError("nothing to do: give -o OUT.mp4 / -o FOLDER and/or --save-path FILE.json")
    shot = ShotOptions(**given(
        path=path, camera=camera, width=width, height=height, fps=fps, seconds=seconds, fov=fov,
        center=numbers(center, 3, "--center", "0,0,0.2"), radius=radius, height_above=orbit_height, turns=turns,
        ease=ease,
        smoothing=smoothing, focus_distance=focus_distance, fov_end=fov_end, aperture=aperture,
        cubemap_layout=cubemap_layout,
    ))
    options = RenderOptions(
        **given(output=what, frame_format=frame_format, lens_samples=lens_samples,
                max_rays_per_chunk=max_rays_per_chunk, memory_budget_bytes=memory_bytes(memory_gb)),
        half=half, resume=resume, overwrite=overwrite, progress=not quiet,
    )
    spec = shard_spec(frames, shard)
    if output_file is not None:
        check_options(output_file, options)
    bind_local_device()
    loaded = load_run(run, device=device)
    built = write_path(loaded, save_path, shot, overwrite) if save_path is not None else None
    if save_path is not None:
        print(f"saved {len(built)} frames of camera path -> {save_path}")
    if output_file is None:
        return
    with output_lock(output_file, spec.lock_part):
        result = render_path(loaded, output_file, shot, options, path=built, shard=spec, splats=_read_splats(splats))
    if spec.rank != 0:
        return
    print(
        f"{result.frames} frames {result.width}x{result.height} @ {result.fps:g} fps ({result.rendered} rendered "
        f"in {result.seconds:.1f} s, {result.rays_per_second:.0f} rays/s) -> {result.output}"
    )
    if shard_note(spec, output_file):
        print(shard_note(spec, output_file))


@app.command()
def assemble(
    output: Annotated[Path, typer.Argument(help="The -o of a sharded render / export panorama / export plates.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing final file.")] = False,
) -> None:
    """Build the final file of a farm render from its shards (MP4 encoded, EXR tiles stitched, plate set checked);
    a missing frame, tile or plate is named with the shard that should have written it."""
    from nerfstage.app.assemble import assemble as run_assemble  # heavy: torch (not at CLI start-up)

    what, files = run_assemble(output, overwrite)
    shown = str(files[0]) if len(files) == 1 else f"{len(files)} files in {files[0].parent}"
    print(f"assembled {what} -> {shown}")


def _read_splats(path: Path | None):
    """The splats of ``--splats`` (None when not given)."""
    if path is None:
        return None
    from nerfstage.render.splats.io import read_splats  # heavy: torch (not at CLI start-up)

    return read_splats(path)


# typer only: the viewer itself is imported when a command runs
from .cli_view import ViewCommand, keep_training_viewer_open, training_viewer, view  # noqa: E402

app.command(cls=ViewCommand)(view)

from .cli_export import export_app  # noqa: E402  (typer only: nerfstage.export is imported per command)

app.add_typer(export_app, name="export")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # libgomp's default spin-waiting makes torch's threads several times slower when the cores are shared (the
    # viewer beside a training run, two runs at once); passive waiting costs nothing measurable on an idle machine.
    # Set before any command imports torch; a value the user exported wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    remember_argv(sys.argv[1:] if argv is None else argv)
    try:
        with command_scope():
            try:
                app(args=argv, standalone_mode=True)
            except NerfstageError as err:
                _fail(err)
            except OSError as err:
                _fail_os(err)
            except KeyboardInterrupt:
                print("nerfstage: interrupted", file=sys.stderr)
                raise SystemExit(130)
    except SystemExit as done:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            _leave_torchrun_rank(done.code)
        raise


def _leave_torchrun_rank(code) -> None:
    """End a torchrun rank now that its command is done: a gloo rank's background threads can abort the
    interpreter's normal shutdown ('terminate called without an active exception', seen after a finished
    training job), which torchrun would report as a failure of work that succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
