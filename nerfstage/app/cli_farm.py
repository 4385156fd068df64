"""``nerfstage train --nproc N``: the same command line relaunched under ``torch.distributed.run`` (torchrun's own
elastic launcher, ``--standalone``: one machine, a free port), minus ``--nproc``. typer-free and torch-free at
import; torch is imported when the launch happens."""

from __future__ import annotations

_ARGV: list[str] = []


def remember_argv(argv: list[str]) -> None:
    """The command line ``nerfstage`` was started with (``main`` calls this first)."""
    _ARGV[:] = [str(a) for a in argv]


def without_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def launch_nproc(nproc: int, flag: str) -> int:
    """Run this command line on ``nproc`` local processes under torch.distributed.run; its exit code (the
    failing rank's: 2 for bad input, as the one-process command)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # heavy: torch.distributed
    from torch.distributed.run import main as torchrun  # heavy: torch.distributed

    try:
        torchrun(["--standalone", f"--nproc-per-node={int(nproc)}", "-m", "nerfstage",
                  *without_option(_ARGV, flag)])
    except ChildFailedError as err:
        codes = [failure.exitcode for failure in err.failures.values()]
        return max((c for c in codes if c and c > 0), default=1)
    return 0
