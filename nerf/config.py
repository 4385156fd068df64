"""Configuration dataclasses of the NeRF stage (plain data; the presets of ``nerfstage.core.presets`` override
them per device kind)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.errors import ConfigError
from ..core.files import atomic_write
from ..core.presets import DEFAULT_PRESET, train_overrides
from .encoding import HashGridConfig

Background = Literal["white", "black", "random"]

MAX_RAYS_PER_CHUNK = 1 << 16
"""Default of every ``max_rays_per_chunk`` (frames, panoramas, plates, point clouds, evaluation, the chain): rays
handed to the model at once by ``chunked.render_rays_chunked``. It bounds the model's working memory: the
reference path holds up to this times ``max_samples_per_ray`` samples, ~100 floats each; the fast inference path
bounds its own memory per round and takes at least ``InferenceOptions.max_rays`` rays per call."""


Sampler = Literal["auto", "occupancy", "proposal"]
AUTO_UNBOUNDED_SAMPLER: Literal["occupancy", "proposal"] = "proposal"
"""What ``sampler="auto"`` picks for unbounded (real) captures; bounded (Blender / RGBA object) scenes always get
"occupancy". Measured on office_360 (default CPU preset, images at most 480 px, 170 s of training each, one script,
load average 4.4-6.5 on 2 cores, 4 of the 8 held-out views): occupancy 15.54 dB / SSIM 0.593, 129 steps, 193 rays/s,
112 s per 480x270 view (colour fog); proposal 23.98 dB / SSIM 0.823, 477 steps, 3 820 rays/s, 12 s per view."""


@dataclass
class ProposalConfig:
    """Proposal sampling (mip-NeRF 360 / nerfacto) for unbounded scenes; see ``nerf/proposal.py``."""

    num_proposal_samples: tuple[int, ...] = (64, 32)
    """Samples per ray evaluated by each proposal network, in order (the first are uniform in the spacing);
    one entry per network (nerfacto: 256, 96). office_360, default CPU preset, 480 px, 170 s each, one script (load
    3.3-4.2, 4 held-out views): 64/32 -> 24 25.57 dB / SSIM 0.876, 6 300 rays/s, 11.8 s per 480x270 view;
    48/24 -> 16 24.29 dB / 0.852, 7 800 rays/s, 4.8 s; 96/48 -> 32 25.67 dB / 0.872, 4 700 rays/s, 10.6 s."""
    num_nerf_samples: int = 24
    """Samples per ray where the radiance field is evaluated (nerfacto: 48)."""
    max_resolutions: tuple[int, ...] = (128, 256)
    """Finest hash-grid resolution of each proposal network (its count sets the number of networks)."""
    num_levels: int = 5
    """Hash-grid levels of each proposal network."""
    log2_hashmap_size: int = 17
    """log2 of each proposal level's table size."""
    hidden_dim: int = 16
    """Width of each proposal network's single hidden layer."""
    near: float = 0.05
    """Nearest sample distance along the ray (normalised scene frame; cameras lie within about 1)."""
    far: float = 1000.0
    """Farthest sample distance (the spacing is uniform in disparity beyond distance 1)."""
    interlevel_loss_mult: float = 1.0
    """Weight of the inter-level (proposal) loss in the training loss."""
    distortion_loss_mult: float = 0.002
    """Weight of mip-NeRF 360's distortion loss on the radiance field's weights."""


@dataclass
class ModelConfig:
    """The radiance field and its sampler (occupancy grid + ray marcher, or proposal networks). Lengths are in the
    normalised scene frame."""

    encoding: HashGridConfig = field(default_factory=HashGridConfig)
    """Multiresolution hash encoding of positions (scene box, or contracted space when unbounded)."""
    hidden_dim: int = 64
    """Width of the density MLP's hidden layer."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    hidden_dim_color: int = 64
    """Width of the colour MLP's two hidden layers."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding (degree**2 coefficients, 1..4)."""
    appearance_dim: int = 16
    """Per-image appearance embedding size (0 = off; real captures use it, Blender scenes do not need it)."""
    bounded: bool = True
    """True: the scene lies inside the scene box (Blender). False: unbounded capture, positions are contracted."""
    contraction_norm: Literal["inf", "l2"] = "inf"
    """Norm of the mip-NeRF 360 contraction for unbounded scenes ("inf" fills the hash grid's cube)."""
    near_plane: float = 0.0
    """No samples closer than this to the ray origin."""
    far_plane: float = 1.0e10
    """No samples farther than this from the ray origin."""
    num_cascades: int = 1
    """Occupancy-grid cascades: cascade k covers the scene box scaled by 2**k (1 for bounded scenes)."""
    occupancy_resolution: int = 128
    """Cells per side of each occupancy-grid cascade."""
    occupancy_update_every: int = 16
    """Training steps between occupancy-grid updates (instant-ngp: 16)."""
    occupancy_warmup_steps: int = 256
    """Before this step every cell is re-evaluated at each update; afterwards a quarter of them plus occupied ones."""
    occupancy_decay: float = 0.95
    """EMA decay of the cached density grid at each update."""
    occupancy_threshold: float = 0.01
    """A cell is occupied when its density * render step exceeds this (capped at the grid's mean)."""
    render_step_size: float | None = None
    """Ray-marching step; None = scene-box diagonal / 1024 (instant-ngp's step for its unit cube)."""
    cone_angle: float = 0.0
    """Step grows as t * cone_angle beyond the base step (0 = fixed step; 1/256 suits unbounded captures)."""
    max_samples_per_ray: int = 1024
    """Hard cap of samples along one ray."""
    alpha_threshold: float = 0.0
    """Samples whose opacity is below this are skipped (found with a density-only pass; 0 = keep all)."""
    early_stop_eps: float = 1.0e-4
    """Ray marching stops once transmittance falls below this."""
    background: Background = "white"
    """Background colour in training for RGBA data ("random" as instant-ngp does); eval always uses white."""
    sampler: Sampler = "auto"
    """Where samples go along rays: "occupancy" (march an occupancy grid, instant-ngp), "proposal" (proposal
    density networks resample each ray, nerfacto; ``proposal``), or "auto": occupancy for bounded scenes,
    ``AUTO_UNBOUNDED_SAMPLER`` for unbounded ones (resolved at train time; config.json records the choice)."""
    proposal: ProposalConfig = field(default_factory=ProposalConfig)
    """Proposal networks and sample counts (used when the sampler is "proposal")."""


def resolve_sampler(model: ModelConfig) -> Literal["occupancy", "proposal"]:
    """The sampler ``model.sampler`` stands for: itself, or for "auto" occupancy on bounded scenes and
    ``AUTO_UNBOUNDED_SAMPLER`` on unbounded ones."""
    if model.sampler != "auto":
        return model.sampler
    return "occupancy" if model.bounded else AUTO_UNBOUNDED_SAMPLER


Device = Literal["auto", "cpu", "cuda"]
PoseRefinement = Literal["off", "SO3xR3"]
AllReduce = Literal["bfloat16", "float32", "row-sparse"]
SceneCentre = Literal["auto", "poses", "focus"]


@dataclass
class DataConfig:
    """How a dataset becomes training rays and held-out views."""

    max_image_side: int = 0
    """Downscale images by the smallest integer factor that brings the longer side to at most this (0 = never)."""
    hold_every: int = 8
    """Without a test split in the dataset, every this-th frame (0, n, 2n, ...) is held out (nerfstudio/mip-NeRF)."""
    eval_view_stride: int = 1
    """Evaluate every this-th held-out view (1 = all; the lego benchmark uses 8: 25 of 200 test views)."""
    scene_centre: SceneCentre = "auto"
    """Unbounded captures: the point that becomes the scene origin. "poses" = the mean camera position, farthest
    camera at distance 1 (nerfstudio's default); "focus" = the point closest to the cameras' optical axes, cameras
    at the distance where their view of it fills the unit box (instant-ngp's centre of attention); "auto" = focus
    when the capture looks inward at one place, else poses (see ``nerf/scene_centre.py``)."""


@dataclass
class TrainConfig:
    """One training run: the model, its data and the optimisation. Saved as RUN/config.json."""

    dataset: str = ""
    """The dataset trained on (absolute path; recorded at train time, read by ``nerfstage eval``)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The radiance field (``bounded`` is set from the dataset at train time)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Images, rays and the held-out split."""
    steps: int = 5000
    """Optimisation steps (the learning-rate schedule is laid out over these)."""
    batch_rays: int = 4096
    """Rays of the first batch; with ``target_samples`` > 0 later batches adapt their ray count."""
    target_samples: int = 0
    """Aim for this many field samples per batch by adapting the ray count, as instant-ngp (0 = fixed rays)."""
    max_batch_rays: int = 65536
    """Upper bound of the adaptive ray count."""
    lr: float = 1.0e-2
    """Adam learning rate of every parameter group (hash tables, MLPs, embeddings), as instant-ngp / nerfacc."""
    lr_warmup_steps: int = 100
    """Linear learning-rate warm-up from 1% of each group's rate over these steps."""
    lr_milestones: tuple[float, ...] = (0.5, 0.75, 0.9)
    """Fractions of the run (steps, or the time budget when it ends first) at which the rate is multiplied..."""
    lr_gamma: float = 0.33
    """... by this factor (nerfacc's instant-ngp schedule)."""
    eval_every: int = 0
    """Render one held-out view and log its PSNR every this many steps (0 = only the final evaluation)."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    """Keep this many most recent checkpoints."""
    seed: int = 0
    """Seed of every random step (initialisation, ray batches, backgrounds, sampling jitter)."""
    device: Device = "auto"
    """auto = CUDA when present, else CPU."""
    time_budget_s: float | None = None
    """Stop training after this many seconds of training time (evaluation not included); None = no limit."""
    eval_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays rendered at once when rendering held-out views and live renders (``max_rays_per_chunk``)."""
    num_threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    unbounded_cascades: int = 4
    """Unbounded captures: at least this many occupancy cascades (cascade k spans 2**k times the unit box)."""
    unbounded_cone_angle: float = 1.0 / 256.0
    """Unbounded captures: ray-marching cone angle when the model's is 0 (steps grow with distance)."""
    pose_refinement: PoseRefinement = "off"
    """Per-image camera-pose refinement of the training views ("SO3xR3": nerfstudio's rotation + translation
    corrections, see ``camera_opt.py``); held-out views keep their dataset poses."""
    pose_lr: float = 1.0e-3
    """Adam learning rate of the pose corrections (radians / normalised-scene units), on the same schedule."""
    allreduce: AllReduce = "bfloat16"
    """Data-parallel training (torchrun): how the gradients travel between ranks each step (``distributed.py``).
    "bfloat16": one dense all-reduce in bfloat16, as PyTorch's bf16 compression hook (half the bytes; Adam
    normalises each step, so the run matches float32 within seed noise); "float32": exact; "row-sparse": only the
    hash-table rows some rank touched (a 1-byte mask first; exact), for links slower than the CPU's bookkeeping
    (on one 2-core machine its indexing costs more than it saves: benchmarks/RESULTS.md, issue 17)."""
    coarse_to_fine: float = 0.0
    """Fraction of the run (as ``lr_milestones`` measure it) over which the field's hash-grid levels are switched
    on, coarsest first (BARF's cosine window, starting from ``optim.COARSE_TO_FINE_START_LEVELS`` levels);
    0 = every level from the start (the default: office_360, 300 s, 0.3 gave 25.91 dB vs 25.97 dB off; the A/B is
    in benchmarks/RESULTS.md, issue 14)."""


def preset_config(name: str, device_kind: str) -> TrainConfig:
    """TrainConfig of preset ``name`` sized for ``device_kind`` ("cpu" or "cuda"): the dataclass defaults with the
    preset's ``"train"`` overrides (``nerfstage.core.presets``)."""
    return config_from_dict(TrainConfig, train_overrides(name, device_kind), fill_defaults=True)


def build_config(preset: str = DEFAULT_PRESET, device: str = "auto", **overrides: Any) -> TrainConfig:
    """The preset for the device ``device`` resolves to, with top-level field ``overrides`` (e.g. steps, seed)."""
    import torch  # heavy: torch (this module is read by the CLI at start-up, for option defaults)

    kind = "cuda" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "cpu"
    base = config_to_dict(preset_config(preset, kind))
    return config_from_dict(TrainConfig, {**base, **overrides, "device": device})


def config_to_dict(config: Any) -> dict:
    """Plain-JSON dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: dict, fill_defaults: bool = True, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a plain dict, strictly: unknown keys and values of the wrong type raise
    ConfigError naming the key (and carrying its path as ``field``); missing keys take the field default
    (``fill_defaults``) or raise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")
    if not fill_defaults and names - set(data):
        raise ConfigError(f"{where}: missing key(s) {', '.join(sorted(names - set(data)))}")
    kwargs = {k: _field_value(hints[k], v, where, k) for k, v in data.items()}
    return cls(**kwargs)


def _field_value(hint: Any, value: Any, where: str, key: str) -> Any:
    """``_coerce`` of field ``key``; its ConfigError carries the field path (``model.background``)."""
    try:
        return _coerce(hint, value, f"{where}.{key}")
    except ConfigError as err:
        err.field = key if err.field is None else f"{key}.{err.field}"
        raise


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against type ``hint`` (dataclass, Literal, Optional, tuple, bool/int/float/str)."""
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, True, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} = {value!r}; expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}; expected a list")
        return tuple(_coerce(args[0], v, where) for v in value)
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise ConfigError(f"{where}: unsupported config type {hint}")
    if not ok:
        raise ConfigError(f"{where} = {value!r}; expected {hint.__name__}")
    return float(value) if hint is float else value


POSITIVE_FIELDS = frozenset({
    "steps", "batch_rays", "max_batch_rays", "lr", "lr_gamma", "eval_chunk", "time_budget_s", "pose_lr",
    "hidden_dim", "hidden_dim_color", "geo_feat_dim", "occupancy_resolution", "occupancy_update_every",
    "num_cascades", "max_samples_per_ray", "render_step_size", "hold_every", "eval_view_stride", "far", "far_plane",
    "num_levels", "features_per_level", "log2_hashmap_size", "base_resolution", "max_resolution",
    "num_nerf_samples", "num_proposal_samples", "max_resolutions",
})
"""Config fields (at any depth) that must be above 0; every other number must be finite and, but for ``seed``, 0
or more (0 means "off" or "all" there)."""


def check_ranges(config: Any, where: str = "config", top: bool = True) -> None:
    """ConfigError naming the first field of ``config`` (a nested config dataclass) whose number is out of range:
    NaN/inf anywhere, <= 0 in ``POSITIVE_FIELDS``, < 0 elsewhere (``seed`` excepted). A top-level field is carried
    as the error's ``field`` (the CLI names its flag)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{where}.{f.name}", top=False)
            continue
        for number in value if isinstance(value, tuple) else (value,):
            expected = _out_of_range(f.name, number)
            if expected:
                raise ConfigError(f"{where}.{f.name} = {number!r}; expected {expected}", field=f.name if top else None)


def _out_of_range(name: str, number: Any) -> str | None:
    """What a number of field ``name`` should be when it is out of range, else None (non-numbers pass)."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    if not math.isfinite(number):
        return "a finite number"
    if name in POSITIVE_FIELDS and number <= 0:
        return "a positive number"
    if name != "seed" and number < 0:
        return "0 or more"
    return None


def save_config(path: Path, config: TrainConfig) -> None:
    """Write RUN/config.json (plain JSON, indent 2)."""
    atomic_write(Path(path), json.dumps(config_to_dict(config), indent=2) + "\n")


def load_config(path: Path) -> TrainConfig:
    """Read RUN/config.json strictly (ConfigError on unknown keys or wrong types)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the run config ({err}); expected the JSON that train wrote")
    config = config_from_dict(TrainConfig, data, fill_defaults=True, where=str(path))
    try:
        check_ranges(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}; the run folder is damaged (fix the value or train again)") from None
    return config
