"""Default capture of a photo folder: registered count, wall time and the ordering/matching decision.

    python benchmarks/capture_photos.py PHOTOS                          # as ``nerfstage capture PHOTOS`` would
    python benchmarks/capture_photos.py PHOTOS --shuffle 0              # a copy under shuffled names (seed 0)
    python benchmarks/capture_photos.py PHOTOS --reference transforms.json   # pose error vs a reference
    python benchmarks/capture_photos.py PHOTOS --exhaustive-max-photos 0 --match-budget 30   # force the analysis

``--shuffle`` copies the photos into the work folder as ``shuffled_0000.jpg ...`` in a seeded random order (the
files are copied byte for byte, so EXIF capture times, when present, still order them). ``--reference``
(nerfstudio/instant-ngp ``transforms.json`` or a COLMAP ``sparse/0`` folder next to ``PHOTOS``) prints the
rotation and centre error after a Sim(3) alignment, by original photo name. Never point ``--work`` into the
repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine, pose_summary, work_dir
from nerfstage.capture.convert import read_colmap
from nerfstage.capture.images import list_images
from nerfstage.capture.loader import load_dataset
from nerfstage.capture.pipeline import CaptureOptions, run_capture
from nerfstage.capture.sfm import pose_errors, trajectory_size


def shuffled_copy(photos: Path, dest: Path, seed: int) -> dict[str, str]:
    """Copy the photos of ``photos`` to ``dest`` under shuffled names; returns new name -> original name."""
    sources, _ = list_images(photos)
    dest.mkdir(parents=True)
    names = {}
    for rank, index in enumerate(np.random.default_rng(seed).permutation(len(sources))):
        source = sources[index]
        name = f"shuffled_{rank:04d}{source.suffix.lower()}"
        shutil.copyfile(source, dest / name)
        names[name] = source.name
    return names


def reference_poses(reference: Path, photos: Path) -> dict[str, np.ndarray]:
    """Original photo name -> [4, 4] OpenGL camera-to-world of a transforms.json or a COLMAP model folder."""
    dataset = read_colmap(reference, photos) if reference.is_dir() else load_dataset(reference)
    return {f.image_path.name: f.world_from_cam for f in dataset.frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED", help="capture a shuffled copy")
    parser.add_argument("--reference", type=Path, default=None, help="transforms.json or COLMAP sparse/0")
    parser.add_argument("--work", default=None, help="work folder (emptied); default: a temporary folder")
    parser.add_argument("--matcher", default="auto", choices=["auto", "sequential", "exhaustive"])
    parser.add_argument("--match-budget", type=float, default=CaptureOptions.match_budget_s)
    parser.add_argument("--exhaustive-max-photos", type=int, default=CaptureOptions.exhaustive_max_photos)
    args = parser.parse_args(argv)
    work = work_dir(args.work, "capture-photos")
    print(f"machine: {machine()}; photos {args.photos}; work folder {work}")
    photos, renamed = args.photos, {}
    if args.shuffle is not None:
        photos = work / "shuffled"
        renamed = shuffled_copy(args.photos, photos, args.shuffle)
        print(f"shuffled copy (seed {args.shuffle}): {len(renamed)} photos in {photos}")
    options = CaptureOptions(matcher=args.matcher, match_budget_s=args.match_budget,
                             exhaustive_max_photos=args.exhaustive_max_photos, progress=False)
    start = time.perf_counter()
    result = run_capture(photos, work / "dataset", options)
    wall = time.perf_counter() - start
    report = result.report
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
    print(f"registered {report['frames_registered']}/{report['frames_selected']}, wall {wall:.1f} s ({steps}); "
          f"{report['num_models']} model(s), {report['loop_pairs']} loop pairs")
    print(f"ordering: {json.dumps(report['ordering'])}")
    print(f"matching: {json.dumps(report['matching'])}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if args.reference is not None:
        written_to_source = report["source_names"]  # frame_00001.jpg -> the (possibly shuffled) photo name
        dataset = load_dataset(result.dataset_dir)
        ours = {}
        for frame in dataset.frames:
            name = written_to_source[frame.image_path.name]
            ours[renamed.get(name, name)] = frame.world_from_cam
        reference = reference_poses(args.reference, args.photos)
        names = sorted(set(ours) & set(reference))
        true = np.stack([reference[n] for n in names])
        rot, centre = pose_errors(np.stack([ours[n] for n in names]), true)
        print(f"vs {args.reference}: {len(names)} common photos; {pose_summary(rot, centre, trajectory_size(true))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
