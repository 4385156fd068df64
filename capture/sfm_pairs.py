"""Which image pairs to match for a folder of photos, decided from the photos themselves (``matcher="auto"``).

COLMAP's own advice: sequential matching for footage whose consecutive frames overlap, exhaustive matching for an
unordered set while it is affordable, retrieval (vocabulary tree: each image with its most similar images) beyond
that. The vocabulary tree needs a trained vocabulary file that cannot be downloaded here, so the retrieval uses a
global descriptor computed from the SIFT features already in the database: VLAD (``VLAD_WORDS`` k-means centres
fitted on a sample of this set's own descriptors, residuals summed per centre, intra-normalised, signed square
root, L2), compared by cosine similarity. Pairs go through pycolmap's ``match_image_pairs`` (imported pairs).

Is it a sequence? In the frame order (EXIF time or name, ``photo_order.py``), a frame and its next frame are
*linked* when either is among the other's ``max(LINK_MIN_K, LINK_FRACTION * N)`` most similar frames. The
*sequence score* is the fraction of linked neighbours (a shuffled set: about ``2 * LINK_FRACTION``; a walk: close
to 1). A *break* is a place in the order that no linked pair within the sequential overlap spans: sequential
matching cannot connect across it (a room shot in bursts breaks between bursts, which is why its 170 photos
registered 56 in name order). The set is a sequence when the score is at least ``SEQUENCE_MIN_SCORE`` and it
has no break.

Cost. Unordered sets are matched exhaustively when ``N`` images times the per-image cost plus ``N (N - 1) / 2``
pairs times the per-pair cost, both measured on this machine (``measure_match_cost``), fits
``SfmOptions.match_budget_s``; otherwise each image is matched with its ``k`` most similar images
(``k`` as large as the budget allows, at least ``RETRIEVAL_MIN_K``) plus its ``sequential_overlap`` next frames.

Measured (``benchmarks/capture_photos.py``, 2 shared cores, load average ~5; fox = 50 phone photos, 1080x1920).
Global descriptors on 24 synthetic 320x240 frames, walk in order / shuffled sequence score: VLAD-32 on every
descriptor 1.00 / 0.22 (VLAD on a 512-descriptor subset 0.74: too noisy), bag of 1024 words 0.96, of 256 words
0.43, 16x12 grey thumbnails 1.00 / 0.22. Fox shuffled: VLAD score 0.12, 6 breaks (thumbnails 0.12); fox in name
order: 0.88 with 2 breaks (thumbnails 0.78, 5 breaks; the 50 photos are a subset of 67 and leave gaps), so
not taken as a sequence and matched exhaustively as before. Cost: fox exhaustive estimated 121 s, taken ~136 s.
Fox shuffled with the analysis forced and a 30 s budget: retrieval (k = 10, 515 pairs + 137 loop pairs), match
65 s against 150 s exhaustively, 50/50 registered either way, 0.586 vs 0.588 deg mean rotation error against
the instant-ngp poses.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .sfm_loops import match_pairs

VLAD_WORDS = 32
"""k-means centres of the VLAD global descriptor."""
KMEANS_SAMPLE_PER_IMAGE = 256
"""SIFT descriptors per image (a seeded random subset) the VLAD k-means is fitted on (every descriptor of an
image goes into its VLAD: on 24 synthetic 320x240 frames a 512-descriptor subset scored a walk 0.74, all of
them 1.00)."""
KMEANS_ITERATIONS = 12
"""Lloyd iterations of the VLAD k-means."""
LINK_MIN_K = 3
"""Two frames are linked when either is among the other's max(LINK_MIN_K, LINK_FRACTION * N) most similar."""
LINK_FRACTION = 0.05
"""See LINK_MIN_K."""
SEQUENCE_MIN_SCORE = 0.8
"""Least fraction of linked neighbours for a sequence (and no break)."""
COST_SAMPLE_PAIRS = 24
"""Random pairs matched to measure the matching cost (``measure_match_cost``)."""
COST_BLOCK_IMAGES = 8
"""Images whose every pair is matched to measure the matching cost (``measure_match_cost``)."""
RETRIEVAL_MIN_K = 10
"""Retrieval matches each image with at least this many most similar images, whatever the budget."""

PlannedMatcher = Literal["sequential", "exhaustive", "retrieval"]


@dataclass
class OrderAnalysis:
    """How much the frame order looks like a walk (see module docstring)."""

    sequence_score: float
    """Fraction of consecutive frames that are linked (most similar to each other)."""
    breaks: int
    """Places in the order no linked pair within the sequential overlap spans."""
    is_sequence: bool
    """``sequence_score >= SEQUENCE_MIN_SCORE`` and no break."""
    neighbour_similarity: float
    """Mean cosine similarity of consecutive frames' global descriptors."""
    random_similarity: float
    """Mean cosine similarity over all pairs (the level of unrelated pairs)."""


@dataclass
class MatchPlan:
    """What ``matcher="auto"`` chose for a photo folder and why (``capture_report.json`` ``matching``)."""

    matcher: PlannedMatcher
    """The matching that ran."""
    reason: str
    """Why, in words."""
    analysis: OrderAnalysis | None = None
    """The sequence analysis (None when it was not needed)."""
    seconds_per_image: float | None = None
    """Measured matching cost of one image (features loaded, index built) on this machine (None: not measured)."""
    seconds_per_pair: float | None = None
    """Measured matching cost of one image pair on this machine (None when not measured)."""
    exhaustive_pairs: int = 0
    """Pairs exhaustive matching would match."""
    estimated_exhaustive_s: float | None = None
    """``N * seconds_per_image + exhaustive_pairs * seconds_per_pair``."""
    retrieval_k: int = 0
    """Most similar images matched per image (retrieval only)."""
    num_pairs: int = 0
    """Pairs matched by the plan (exhaustive: all; retrieval: the imported list; sequential: 0, pycolmap's)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """``describe`` (global descriptors) and ``cost`` (sample matching) wall time."""

    def to_json(self) -> dict:
        """Report form (floats rounded)."""
        out = asdict(self)
        for key in ("seconds_per_image", "seconds_per_pair", "estimated_exhaustive_s"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        if out["analysis"]:
            out["analysis"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in out["analysis"].items()}
        out["seconds"] = {k: round(v, 3) for k, v in out["seconds"].items()}
        return out


# ----------------------------------------------------------------------------------------------- descriptors


def read_descriptors(database: Path) -> tuple[list[str], list[np.ndarray]]:
    """Image names (sorted: frame order) and their SIFT descriptors ([K, 128] uint8 each) from a database."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    db = pycolmap.Database.open(str(database))
    try:
        images = sorted(db.read_all_images(), key=lambda im: im.name)
        return [im.name for im in images], [np.asarray(db.read_descriptors(im.image_id).data) for im in images]
    finally:
        db.close()


def vlad_descriptors(descriptors: list[np.ndarray], seed: int = 0) -> np.ndarray:  # -> [N, VLAD_WORDS * 128]
    """Unit-length VLAD global descriptors of images given their SIFT descriptors ([K_i, 128] each)."""
    rng = np.random.default_rng(seed)
    training = np.concatenate([_root_sift(_subsample(d, KMEANS_SAMPLE_PER_IMAGE, rng)) for d in descriptors])
    if not len(training):  # no image has a feature: nothing to compare (mapping will fail and say so)
        return np.zeros((len(descriptors), 1), dtype=np.float32)
    centres = _kmeans(training, VLAD_WORDS, rng)  # [W, 128]
    out = np.zeros((len(descriptors), len(centres), 128), dtype=np.float32)
    for i, raw in enumerate(descriptors):
        if len(raw):
            features = _root_sift(raw)  # [K, 128]
            one_hot = _one_hot(_nearest(features, centres), len(centres))  # [K, W]
            out[i] = one_hot.T @ features - one_hot.sum(0)[:, None] * centres  # residual sums per centre
    out /= np.maximum(np.linalg.norm(out, axis=2, keepdims=True), 1e-12)  # intra-normalisation
    out = np.sign(out) * np.sqrt(np.abs(out))
    out = out.reshape(len(descriptors), -1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _one_hot(words: np.ndarray, count: int) -> np.ndarray:  # [K] -> [K, count] float32
    out = np.zeros((len(words), count), dtype=np.float32)
    out[np.arange(len(words)), words] = 1.0
    return out


def _subsample(descriptors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:  # -> [k, 128]
    if len(descriptors) <= count:
        return descriptors
    return descriptors[np.sort(rng.choice(len(descriptors), count, replace=False))]


def _root_sift(descriptors: np.ndarray) -> np.ndarray:  # [K, 128] -> [K, 128] float32
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(d)


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:  # [K, D], [W, D] -> [K]
    return np.argmin((centres**2).sum(1)[None, :] - 2.0 * points @ centres.T, axis=1)


def _kmeans(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:  # [K, D] -> [count, D]
    count = min(count, len(points))
    centres = points[rng.choice(len(points), count, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        one_hot = _one_hot(_nearest(points, centres), count)  # [K, count]
        sizes = one_hot.sum(0)[:, None]  # [count, 1]
        centres = np.where(sizes > 0, (one_hot.T @ points) / np.maximum(sizes, 1), centres)
    return centres


# ----------------------------------------------------------------------------------------------- analysis


def link_count(num_images: int) -> int:
    """How many most similar frames count as linked to a frame."""
    return max(LINK_MIN_K, int(np.ceil(LINK_FRACTION * num_images)))


def analyse_order(similarity: np.ndarray, overlap: int) -> OrderAnalysis:
    """Sequence score, breaks and verdict of the frame order, from the [N, N] similarity of global descriptors."""
    n = len(similarity)
    linked = _linked(similarity, link_count(n))  # [N, N] bool, symmetric
    neighbours = linked[np.arange(n - 1), np.arange(1, n)]  # [N - 1]
    breaks = sum(not _spanned(linked, place, overlap) for place in range(n - 1))
    score = float(neighbours.mean()) if n > 1 else 1.0
    off_diagonal = similarity[~np.eye(n, dtype=bool)]
    return OrderAnalysis(
        sequence_score=score,
        breaks=int(breaks),
        is_sequence=bool(score >= SEQUENCE_MIN_SCORE and breaks == 0),
        neighbour_similarity=float(similarity[np.arange(n - 1), np.arange(1, n)].mean()) if n > 1 else 1.0,
        random_similarity=float(off_diagonal.mean()) if n > 1 else 1.0,
    )


def _linked(similarity: np.ndarray, k: int) -> np.ndarray:  # [N, N] -> [N, N] bool
    n = len(similarity)
    ranked = np.argsort(-_without_self(similarity), axis=1)[:, : min(k, n - 1)]  # [N, k]
    linked = np.zeros((n, n), dtype=bool)
    linked[np.repeat(np.arange(n), ranked.shape[1]), ranked.ravel()] = True
    return linked | linked.T


def _spanned(linked: np.ndarray, place: int, overlap: int) -> bool:
    """Whether a linked pair (i, j), i <= place < j, j - i <= overlap exists."""
    lo = max(0, place - overlap + 1)
    return any(linked[i, place + 1 : i + overlap + 1].any() for i in range(lo, place + 1))


def _without_self(similarity: np.ndarray) -> np.ndarray:
    out = similarity.astype(np.float64, copy=True)
    np.fill_diagonal(out, -np.inf)
    return out


# ----------------------------------------------------------------------------------------------- pairs


def retrieval_pairs(similarity: np.ndarray, k: int, overlap: int) -> list[tuple[int, int]]:
    """Index pairs (i < j): each image with its ``k`` most similar images and its ``overlap`` next frames."""
    n = len(similarity)
    ranked = np.argsort(-_without_self(similarity), axis=1)[:, : min(k, n - 1)]  # [N, k]
    pairs = {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in ranked[i]}
    pairs |= {(i, j) for i in range(n) for j in range(i + 1, min(n, i + overlap + 1))}
    return sorted(pairs)


def retrieval_k(num_images: int, pair_budget: float) -> int:
    """Most similar images per image that ``pair_budget`` pairs allow (each adds about N/2 pairs after
    de-duplication of mutual neighbours, counted as N to stay inside the budget), at least RETRIEVAL_MIN_K."""
    return int(min(num_images - 1, max(RETRIEVAL_MIN_K, pair_budget // max(num_images, 1))))


def measure_match_cost(
    database: Path, names: list[str], work_dir: Path, match_kwargs: dict, seed: int
) -> tuple[float, float]:
    """(seconds per image, seconds per pair) of matching + verification on this machine, now.

    A matcher call pays once per image it touches (loading its features and building its search index) and
    once per pair. Timed on random pairs alone (each image in about one pair) the per-pair figure came out 2.3x
    (24 synthetic photos) to 2.6x (fox, 50 photos) what exhaustive matching then took per pair, since exhaustive
    matching reuses each image for N - 1 pairs. So two samples are timed: COST_SAMPLE_PAIRS random pairs (many
    images, a pair each) and every pair among COST_BLOCK_IMAGES random images (few images, many pairs each);
    the two timings give both costs (24 synthetic photos: 17.2 s predicted, 16.6 s taken). The pairs stay in
    the database and are not matched again.
    """
    rng = np.random.default_rng(seed)
    n = len(names)
    first, second = np.triu_indices(n, 1)
    chosen = rng.choice(len(first), min(COST_SAMPLE_PAIRS, len(first)), replace=False)
    spread = [(names[first[c]], names[second[c]]) for c in chosen]
    block_images = sorted(rng.choice(n, min(COST_BLOCK_IMAGES, n), replace=False))
    block = [(names[i], names[j]) for i, j in itertools.combinations(block_images, 2)]
    taken = set(spread)
    block = [pair for pair in block if pair not in taken]  # (a, b) with a < b in both lists
    timings = []
    for pairs, label in ((spread, "cost_spread"), (block, "cost_block")):
        start = time.perf_counter()
        match_pairs(database, pairs, work_dir / f"{label}.txt", match_kwargs)
        timings.append(time.perf_counter() - start)
    return _solve_costs(timings[0], len(spread), len({x for p in spread for x in p}), timings[1], len(block),
                        len(block_images))


def _solve_costs(
    t_spread: float, pairs_spread: int, images_spread: int, t_block: float, pairs_block: int, images_block: int
) -> tuple[float, float]:
    """(per image, per pair) from t = per_image * images + per_pair * pairs for both samples; when the samples
    cannot separate them (too few pairs, or timing noise gives a negative cost) all of it is put on the pairs."""
    det = images_spread * pairs_block - images_block * pairs_spread
    if pairs_block and det:
        per_pair = (t_block * images_spread - t_spread * images_block) / det
        per_image = (t_spread - per_pair * pairs_spread) / images_spread
        if per_pair > 0 and per_image >= 0:
            return per_image, per_pair
    return 0.0, (t_spread + t_block) / max(pairs_spread + pairs_block, 1)


def plan_photo_matching(
    database: Path,
    work_dir: Path,
    match_kwargs: dict,
    *,
    overlap: int,
    budget_s: float,
    exhaustive_max_photos: int,
    seed: int,
) -> tuple[MatchPlan, list[tuple[str, str]]]:
    """The plan for a photo folder whose features are in ``database``, and the name pairs to match for a
    retrieval plan (empty otherwise)."""
    start = time.perf_counter()
    names, descriptors = read_descriptors(database)
    global_desc = vlad_descriptors(descriptors, seed)  # [N, D]
    similarity = global_desc @ global_desc.T  # [N, N]
    analysis = analyse_order(similarity, overlap)
    seconds = {"describe": time.perf_counter() - start}
    n = len(names)
    all_pairs = n * (n - 1) // 2
    order = (f"sequence score {analysis.sequence_score:.2f} (>= {SEQUENCE_MIN_SCORE} needed), "
             f"{analysis.breaks} break(s)")
    if n <= exhaustive_max_photos:
        reason = f"{n} <= {exhaustive_max_photos} photos: exhaustive, as COLMAP does for small sets ({order})"
        return MatchPlan("exhaustive", reason, analysis, exhaustive_pairs=all_pairs, num_pairs=all_pairs,
                         seconds=seconds), []
    if analysis.is_sequence:
        return MatchPlan("sequential", f"consecutive photos overlap: {order}", analysis,
                         exhaustive_pairs=all_pairs, seconds=seconds), []
    start = time.perf_counter()
    per_image, per_pair = measure_match_cost(database, names, work_dir, match_kwargs, seed)
    seconds["cost"] = time.perf_counter() - start
    estimate = per_image * n + per_pair * all_pairs
    costs = (f"exhaustive {n} images x {per_image * 1000:.0f} ms + {all_pairs} pairs x {per_pair * 1000:.1f} ms "
             f"= {estimate:.0f} s, budget {budget_s:.0f} s")
    plan = MatchPlan("exhaustive", "", analysis, per_image, per_pair, all_pairs, estimate, seconds=seconds)
    if estimate <= budget_s:
        plan.reason, plan.num_pairs = f"not a sequence ({order}); {costs}: fits", all_pairs
        return plan, []
    k = retrieval_k(n, max(budget_s - per_image * n, 0.0) / max(per_pair, 1e-9))
    index_pairs = retrieval_pairs(similarity, k, overlap)
    plan.matcher, plan.retrieval_k, plan.num_pairs = "retrieval", k, len(index_pairs)
    plan.reason = (f"not a sequence ({order}); {costs}: too long, so each photo with its {k} most similar "
                   f"(VLAD on SIFT) and its {overlap} next")
    return plan, [(names[i], names[j]) for i, j in index_pairs]
