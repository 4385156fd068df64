"""``nerfstage assemble OUTPUT``: build the final file of a render that farm shards wrote piece by piece.

Which assembly runs follows from OUTPUT and the job file of its working folder (``nerfstage.core.shards``): an
``.mp4`` is encoded from its frame cache, a frame folder or a plate folder is checked complete (and the plates'
manifests merged), an ``.exr`` / ``.png`` panorama is stitched from its tiles with its mip levels built.
"""

from __future__ import annotations

from pathlib import Path

from ..core import shards
from ..core.errors import InputError
from ..export.panorama import assemble_panorama, tiles_folder
from ..export.plates import assemble_plates
from ..render.pipeline import assemble_render, working_folder


def assemble(output: Path, overwrite: bool = False) -> tuple[str, list[Path]]:
    """(what was assembled, its files) for the sharded output ``output``; InputError naming what is missing."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix == ".mp4":
        return "video", assemble_render(output, overwrite)
    if suffix in (".exr", ".png"):
        return "panorama", assemble_panorama(output, overwrite)
    job = shards.read_job(output) if output.is_dir() else None
    if job is not None and job.get("kind") == "plates":
        return "plates", assemble_plates(output)
    if job is not None and job.get("kind") == "frames":
        return "frames", assemble_render(output, overwrite)
    raise InputError(f"{output}: no sharded render to assemble here (looked for {shards.JOB_FILE} in "
                     f"{working_folder(output) if suffix else output}; panoramas: {tiles_folder(output)}); give the "
                     "-o of the sharded render, export panorama or export plates command")
