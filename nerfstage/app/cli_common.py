"""What every ``nerfstage`` command line shares: how a (sub-)app is made and the options that mean the same
everywhere (device, quiet, seed, overwrite, run folder). typer only: importing this stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def new_app(name: str, help: str) -> typer.Typer:
    """A typer app (or sub-app) with nerfstage's settings: help when called bare, our own error lines."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False)


RunArg = Annotated[Path, typer.Argument(help="A run folder written by `nerfstage train`.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Seed = Annotated[int, typer.Option(help="Seed of every random step.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
RedoStages = Annotated[bool, typer.Option("--overwrite", help="Redo stages whose outputs are already valid.")]
