"""What every ``nerfstage`` command line shares: how a (sub-)app is made, how options meet the library's option
dataclasses, and the options that mean the same everywhere (device, quiet, seed, overwrite, run folder). typer
only: importing this stays cheap.

Options that set a library dataclass field default to None ("not given"): the command passes only the given ones
(``given``), so each default is declared once, in its dataclass. ``--help`` of such a command shows the dataclass
defaults all the same (``fills``: the dataclass module is imported when the help is shown, not before). Library
errors about one option name its field; ``flag_message`` turns that into the running command's flag.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Optional

import typer
from typer.core import TyperCommand, TyperOption

from ..core.errors import ConfigError, Interrupted, NerfstageError


class NerfstageCommand(TyperCommand):
    """Every nerfstage command: knows which dataclass fields its options fill, to show their defaults in ``--help``
    and to name the flag of a field that a library error is about."""

    sources: ClassVar[tuple[str, ...]] = ()
    """``"module:Class"`` of each option dataclass the command fills (first one holding a field wins)."""
    renamed: ClassVar[dict[str, Any]] = {}
    """Option parameter -> its field where the names differ, or (field, field value -> option value) where the
    option also has another unit (``--memory-gb`` of ``memory_budget_bytes``)."""

    def invoke(self, ctx: typer.Context) -> Any:
        _RUNNING.set(self)  # cli.main names the flags of the command that failed
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # typer would exit 130 silently: one line instead (atomic writers cleaned up)
            raise Interrupted("interrupted (Ctrl+C); finished files are kept, partial ones were removed") from None

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        defaults = library_defaults(self.sources)
        for param in self.params:
            field, to_option = self._field(param.name)
            if param.default is None and defaults.get(field) is not None:
                # shown, and filled had the command run on: the same value the dataclass takes when not given
                param.default = to_option(defaults[field])
        super().format_help(ctx, formatter)

    def flag_of(self, field: str) -> tuple[str, bool] | None:
        """The long flag of the option that sets ``field`` and whether its values read as the field's."""
        for param in self.params:
            name, to_option = self._field(param.name)
            flags = [o for o in param.opts if o.startswith("--")] if isinstance(param, TyperOption) else []
            if name == field and flags:
                return max(flags, key=len), to_option is _same
        return None

    def _field(self, name: str | None) -> tuple[str, Callable[[Any], Any]]:
        rename = self.renamed.get(name or "", name or "")
        return (rename, _same) if isinstance(rename, str) else rename


_RUNNING: ContextVar[NerfstageCommand | None] = ContextVar("nerfstage_command", default=None)


@contextmanager
def command_scope() -> Iterator[None]:
    """Around one command line: ``flag_message`` inside it knows the command that ran (and only inside it)."""
    token = _RUNNING.set(None)
    try:
        yield
    finally:
        _RUNNING.reset(token)


def _same(value: Any) -> Any:
    return value


def fills(*sources: str, **renamed: Any) -> type[NerfstageCommand]:
    """The command class of a command whose options fill the dataclasses ``sources`` (``"module:Class"``);
    ``renamed``: option parameter -> field, or (field, converter of the default) where the option's unit differs."""
    return type("FillsCommand", (NerfstageCommand,), {"sources": sources, "renamed": renamed})


def library_defaults(sources: tuple[str, ...]) -> dict[str, Any]:
    """Field -> default of the dataclasses ``sources`` (``"module:Class"``; imported now), first source first."""
    defaults: dict[str, Any] = {}
    for source in reversed(sources):
        module, name = source.split(":")
        cls = getattr(importlib.import_module(module), name)
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
    return defaults


def given(**values: Any) -> dict[str, Any]:
    """The options given on the command line (not None): what the command passes to a library dataclass."""
    return {k: v for k, v in values.items() if v is not None}


def lowered(text: Optional[str]) -> Optional[str]:
    """A choice as the library spells it (lower case); None stays "not given"."""
    return None if text is None else text.lower()


def flag_message(err: NerfstageError) -> str:
    """The first line of ``err``; when it is about a field the running command sets with a flag, told with the
    flag (``max_rays_per_chunk=0: ...`` -> ``--max-rays-per-chunk 0: ...``)."""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    command = _RUNNING.get()
    found = command.flag_of(err.field) if command is not None and err.field else None
    if found is None:
        return message
    flag, same_values = found
    if same_values and message.startswith(f"{err.field}="):
        return f"{flag} {message[len(err.field) + 1:]}"
    if same_values and message.startswith(f"{err.field}:"):
        return flag + message[len(err.field):]
    return f"{flag}: {message}"


class _App(typer.Typer):
    def command(self, *args: Any, cls: type[NerfstageCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or NerfstageCommand, **kwargs)


def new_app(name: str, help: str) -> typer.Typer:
    """A typer app (or sub-app) with nerfstage's settings: help when called bare, our own error lines, commands
    of class ``NerfstageCommand``."""
    return _App(name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _number_check(test: Callable[[float], bool], expected: str) -> Callable[..., Any]:
    """A typer option callback refusing a given number that fails ``test`` (NaN and infinity always fail) with
    one line naming the flag and the value; None (the flag not given) passes: "default" is the flag's absence."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:
            return value
        if not math.isfinite(value) or not test(value):
            flag = max((o for o in param.opts if o.startswith("--")), key=len, default=param.name)
            raise ConfigError(f"{flag} {value:g}: expected {expected}")
        return value

    return check


positive = _number_check(lambda v: v > 0, "a positive number")
"""Option callback: sizes, counts, rates and durations (``--width 0``, ``--fps 0``, ``--steps -5`` refused)."""
non_negative = _number_check(lambda v: v >= 0, "0 or more")
"""Option callback: values where 0 means "off" (``--eval-every 0``, ``--tile-size 0``, ``--aperture 0``)."""
finite = _number_check(lambda v: True, "a finite number")
"""Option callback: any finite number (angles, offsets, seeds)."""


RunArg = Annotated[Path, typer.Argument(help="A run folder written by `nerfstage train`.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Seed = Annotated[Optional[int], typer.Option(help="Seed of every random step.", callback=non_negative)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
MemoryGb = Annotated[
    Optional[float], typer.Option("--memory-gb", help="Memory budget of the buffers, GiB.", callback=positive)
]
MEMORY_GB = ("memory_budget_bytes", lambda size: size / 2**30)
"""``renamed`` entry of ``fills`` for ``--memory-gb`` (the dataclass field holds bytes)."""


def memory_bytes(memory_gb: Optional[float]) -> Optional[int]:
    """``--memory-gb`` as the dataclass's ``memory_budget_bytes`` (None: not given)."""
    return None if memory_gb is None else int(memory_gb * 2**30)


MaxRaysPerChunk = Annotated[
    Optional[int], typer.Option("--max-rays-per-chunk", help="Rays rendered at once (memory budget).",
                                callback=positive)
]
RedoStages = Annotated[bool, typer.Option("--overwrite", help="Redo stages whose outputs are already valid.")]
MAX_NPROC = 1024
"""Largest ``--nproc``."""
ChainNproc = Annotated[Optional[int], typer.Option(
    "--nproc", help="Run on N processes of this machine (torch.distributed.run): training data-parallel, videos and "
    "plates split frame- / tile-wise, the same files as one process. Clusters: torchrun ... -m nerfstage run.")]


def numbers(text: Optional[str], count: int, name: str, example: str) -> Optional[tuple[float, ...]]:
    """"a,b,c" -> (a, b, c) with exactly ``count`` finite numbers; ConfigError naming the option otherwise."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{name} {text!r}: expected {count} comma-separated numbers, e.g. {example}")
    return values


Frames = Annotated[Optional[str], typer.Option(
    "--frames", help="Farm task: render only frames (tiles, plates) A-B, 1-based inclusive; then "
    "`nerfstage assemble`.")]
Shard = Annotated[Optional[str], typer.Option(
    "--shard", help="Farm task: render only every N-th frame (tile, plate) from the K-th (K/N, e.g. "
    "$SLURM_ARRAY_TASK_ID/8); then `nerfstage assemble`.")]


def shard_spec(frames: Optional[str], shard: Optional[str]):
    """The ShardSpec of ``--frames`` / ``--shard`` and the ``torchrun`` environment (errors name the flag)."""
    from nerfstage.core.shards import ShardSpec  # light (no torch), kept out of CLI start-up

    return ShardSpec.parse(frames, shard)


def shard_note(spec, output: Path) -> str:
    """A line after a farm shard: what to do once every shard is done ('' for a whole job)."""
    if not spec.partial:
        return ""
    return f"{spec.label()} done; when every shard is done: nerfstage assemble {output}"


# The shot options `render` and `export camera` share (render/plan.py ShotOptions): one declaration each.
CameraPath = Annotated[Optional[str], typer.Option(
    "--path", help="orbit | spiral | interpolate | dolly-zoom | FILE.json (camera path).")]
Width = Annotated[
    Optional[int], typer.Option(help="Frame width, pixels (default: the training images').", callback=positive)]
Fps = Annotated[Optional[float], typer.Option(help="Frames per second (default 30).", callback=positive)]
Seconds = Annotated[Optional[float], typer.Option(help="Duration in seconds (default 4).", callback=positive)]
Fov = Annotated[Optional[float], typer.Option(help="Vertical field of view, degrees.", callback=positive)]
Center = Annotated[Optional[str], typer.Option(help="Orbit/spiral centre x,y,z (normalised frame).")]
Radius = Annotated[Optional[float], typer.Option(help="Orbit radius (normalised units).", callback=positive)]
OrbitHeight = Annotated[Optional[float], typer.Option(
    "--orbit-height", help="Camera height above the centre (+z).", callback=finite)]
Turns = Annotated[Optional[float], typer.Option(
    help="Orbit / spiral revolutions (negative: the other way round).", callback=finite)]
FocusDistance = Annotated[Optional[float], typer.Option(
    "--focus-distance", help="Dolly-zoom subject distance (render: also the lens's focus distance).",
    callback=positive)]
FovEnd = Annotated[Optional[float], typer.Option("--fov-end", help="Dolly zoom: final fov, degrees.",
                                                 callback=positive)]
Ease = Annotated[Optional[str], typer.Option(help="linear | ease-in | ease-out | ease-in-out.")]
Smoothing = Annotated[Optional[float], typer.Option(help="interpolate: smoothing of the training cameras.",
                                                    callback=non_negative)]
