"""Second SfM pass for videos: long-baseline ("loop") pairs chosen from the first model's POSES, matched into the
same database, then triangulated on the fixed poses (new tracks, existing ones completed and merged) before the
final refinement.

Why. Sequential matching links each frame only to its next few frames, so a walk-around is a chain of short
baselines and bends slowly (on the 100-frame synthetic walk: 0.04 deg at the ends, 0.005 deg in the middle).
Pairs further apart hold the ends together, but choosing them by appearance (exhaustive or quadratic pairs)
matches look-alike views of symmetric scenes and flips whole stretches (beer_images). Chosen from the poses of
the sequential model, a pair is only matched when the two cameras look the same way; and since pass 2 does not
map again (it triangulates on the fixed poses of pass 1 and then bundle-adjusts), a wrong match can only fail
triangulation, never re-order the cameras.

Measured on the cached 100-frame synthetic walk (640x480; pass 1 = sequential overlap 6 + fast mapping; every
figure after the final refinement; pycolmap defaults: 0.0108 deg): no second pass 0.0178 deg; pairs every 12th
gap (174 pairs, 9 s matching at load ~5) 0.0091; every 6th (319 pairs, 26 s) 0.0082; every 4th (549) 0.0096.
Keeping the pass-1 points (``clear_points=False``) is as accurate as rebuilding them all (0.0082 vs 0.0084 deg)
and ~5x cheaper (4 s vs 21 s). Re-mapping from scratch on such matches reaches 0.0066-0.0079 deg but costs a
second mapping (~250 s there).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pycolmap


def viewing_geometry(reconstruction: pycolmap.Reconstruction) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Registered image names in name (frame) order, their unit viewing axes [N, 3] and centres [N, 3] in the
    model's world."""
    images = sorted((im for im in reconstruction.images.values() if im.has_pose), key=lambda im: im.name)
    names = [im.name for im in images]
    if not images:
        return names, np.zeros((0, 3)), np.zeros((0, 3))
    cam_from_world = np.stack([im.cam_from_world().matrix() for im in images])  # [N, 3, 4]
    rotation, translation = cam_from_world[:, :, :3], cam_from_world[:, :, 3]  # [N, 3, 3], [N, 3]
    axes = rotation[:, 2, :]  # [N, 3] camera +z (viewing direction) in world coordinates
    centres = -np.einsum("nji,nj->ni", rotation, translation)  # [N, 3]
    return names, axes, centres


def select_loop_pairs(
    names: list[str], axes: np.ndarray, min_gap: int, every: int, max_angle_deg: float
) -> list[tuple[str, str]]:
    """Pairs (names[a], names[b]) with b - a > ``min_gap``, b - a a multiple of ``every`` and viewing axes
    ``axes`` [N, 3] (unit) less than ``max_angle_deg`` apart. ``every`` <= 0 selects nothing."""
    if every <= 0 or len(names) <= min_gap + 1:
        return []
    first, second = np.triu_indices(len(names), min_gap + 1)  # [P], [P]
    cos = np.einsum("pi,pi->p", axes[first], axes[second])  # [P]
    keep = ((second - first) % every == 0) & (cos > np.cos(np.radians(max_angle_deg)))
    return [(names[a], names[b]) for a, b in zip(first[keep], second[keep])]


def match_pairs(database: Path, pairs: list[tuple[str, str]], pairs_file: Path, match_kwargs: dict) -> None:
    """Match and verify ``pairs`` (image names) into ``database``; pairs already matched are skipped, and so are
    names with white space (COLMAP's pair list is space-separated)."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    lines = [f"{a} {b}\n" for a, b in pairs if len(f"{a}{b}".split()) == 1]
    pairs_file.write_text("".join(lines))
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(pairs_file)
    try:
        pycolmap.match_image_pairs(database, pairing_options=pairing, **match_kwargs)
    finally:
        pairs_file.unlink(missing_ok=True)


def retriangulate(
    reconstruction: pycolmap.Reconstruction,
    database: Path,
    image_dir: Path,
    out_dir: Path,
    mapping: pycolmap.IncrementalPipelineOptions,
) -> pycolmap.Reconstruction:
    """``reconstruction`` with points triangulated from every verified match of ``database`` on its fixed poses
    and camera (existing tracks kept, completed and merged); ``out_dir`` is scratch space, removed afterwards."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    try:
        return pycolmap.triangulate_points(
            pycolmap.Reconstruction(reconstruction),
            database,
            image_dir,
            out_dir,
            clear_points=False,
            options=mapping,
            refine_intrinsics=False,
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
