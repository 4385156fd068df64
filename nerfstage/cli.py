"""The one ``nerfstage`` command. Thin: parses options, calls library code, turns errors into one line.

Nothing heavy is imported at module level, so ``nerfstage --help`` never imports torch. Exit codes: 0 ok,
2 bad input (``nerfstage.errors.InputError``), 1 internal failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import NerfstageError

app = typer.Typer(
    name="nerfstage",
    help="Phone video -> radiance field -> fly-throughs, meshes and LED-wall plates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: BaseException, code: int) -> None:
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"nerfstage: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except NerfstageError as err:
        _fail(err, err.exit_code)
    except KeyboardInterrupt:
        print("nerfstage: interrupted", file=sys.stderr)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
