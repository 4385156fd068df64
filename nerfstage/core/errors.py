"""Error types raised by library code. Only ``nerfstage.cli`` prints them and exits.

Every message names the offending file or value and what was expected, so the CLI can print it as one line.
An error about one option names its dataclass field (``max_rays_per_chunk=0: expected ...``) and carries it as
``field``, so the CLI can say which of its flags that is (``--max-rays-per-chunk 0: expected ...``).
"""

from __future__ import annotations


class NerfstageError(Exception):
    """Base class of every error nerfstage raises on purpose."""

    exit_code = 1

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field
        """The option (dataclass field) the error is about, when it is about one; messages then start with it."""


class InputError(NerfstageError):
    """The user's input (a file, folder, option or value) is unusable. CLI exit code 2."""

    exit_code = 2


class DatasetError(InputError):
    """A dataset (transforms.json, Blender splits, COLMAP model, images) is missing, malformed or unsafe."""


class VideoError(InputError):
    """A video cannot be opened, decoded, or holds too few frames."""


class OutputExistsError(InputError):
    """The output already exists and ``--overwrite`` was not given."""


class ReconstructionError(InputError):
    """Structure-from-motion could not register enough frames; the message says what to try."""


class ConfigError(InputError):
    """An option or config value is out of range or inconsistent."""


class DeviceError(InputError):
    """A device (e.g. CUDA) was requested but is not available."""


class CheckpointError(InputError):
    """A run folder has no usable checkpoint, or the checkpoint is of an unknown format."""


class LockedError(InputError):
    """Another nerfstage process is writing the same run or output folder (its PID is in the message)."""


class Interrupted(NerfstageError):
    """The user stopped the command (Ctrl+C); the message says what was kept and how to go on. Exit code 130."""

    exit_code = 130
