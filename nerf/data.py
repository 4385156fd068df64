"""Training data of the NeRF stage: images in memory, rays in the normalised scene frame, a random ray batcher.

Pipeline: a :class:`~nerfstage.capture.dataset.Dataset` (any format the capture loader reads) is validated,
normalised into the field's box (:func:`normalize_scene`, written as nerfstudio's ``dataparser_transforms.json``),
split into train / held-out views (:func:`split_indices`) and loaded into :class:`ViewSet` objects: every pixel
of every view in one flat uint8 buffer, plus one table of per-pixel camera directions per distinct camera.
The table holds the normalised image coordinates (x/z, y/z, **OpenCV camera axes**) of each pixel centre, from
the foundation's camera model of the frame's ``Intrinsics`` (``nerfstage.core.cameras.camera_from_intrinsics``:
the same rays render and eval use); they are rotated to the world with ``convert_camera_axes(world_from_cam)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from ..capture.dataset import Dataset, Frame
from ..core.cameras import camera_from_intrinsics
from ..core.errors import DatasetError, DeviceError
from ..core.files import atomic_write
from ..core.geometry import Intrinsics, convert_camera_axes
from ..core.rays import pixel_centers, pixel_chunks
from .scene_centre import choose_centre, focus_scale

ROTATION_TOLERANCE = 1e-4
"""Largest |R R^T - I| entry accepted for a rotation read from a file."""
BLENDER_AABB = 1.5
"""Half-size of the Blender (NeRF-synthetic) scene box, as nerfstudio's blender dataparser uses."""
MIN_TABLE_Z = 1e-6
"""Smallest z of a unit pixel ray that ``camera_table`` stores as x/z (89.99994 degrees off the optical axis)."""
TABLE_CHUNK = 1 << 15
"""Pixels ``camera_table`` unprojects at once: cache-sized temporaries make the Newton undistortion of a
1600x1200 camera several times faster than one whole-image pass."""


@dataclass
class SceneTransform:
    """dataset world -> normalised scene: ``p_scene = scale * (transform @ [p; 1])`` (nerfstudio semantics)."""

    transform: np.ndarray
    """[3, 4] rotation + translation applied first."""
    scale: float
    """Uniform scale applied after ``transform``."""
    centre: str = ""
    """How it was chosen ("poses", "focus", "identity"; "" when read from a file). Not written to the file."""

    def apply(self, world_from_cams: np.ndarray) -> np.ndarray:
        """[N, 4, 4] camera-to-world (dataset frame) -> [N, 4, 4] in the normalised frame (axes unchanged)."""
        out = np.array(world_from_cams, dtype=np.float64, copy=True)
        out[:, :3, :] = self.transform[None, :, :3] @ out[:, :3, :]
        out[:, :3, 3] += self.transform[None, :, 3]
        out[:, :3, 3] *= self.scale
        return out

    def to_json(self) -> dict:
        """The ``dataparser_transforms.json`` dict, exactly as nerfstudio writes it."""
        return {"transform": self.transform.tolist(), "scale": float(self.scale)}


def write_dataparser_transforms(path: Path, scene: SceneTransform) -> None:
    """Write ``dataparser_transforms.json`` (indent 4, as nerfstudio's ``save_dataparser_transform``)."""
    atomic_write(Path(path), json.dumps(scene.to_json(), indent=4))


def read_dataparser_transforms(path: Path) -> SceneTransform:
    """Read a ``dataparser_transforms.json``; DatasetError when it is malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        transform = np.asarray(data["transform"], dtype=np.float64)
        scale = float(data["scale"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a dataparser_transforms.json ({err}); expected transform 3x4 + scale")
    if transform.shape != (3, 4):
        raise DatasetError(f"{path}: transform has shape {transform.shape}; expected 3x4")
    if not np.isfinite(transform).all() or not math.isfinite(scale) or scale <= 0.0:
        raise DatasetError(f"{path}: transform / scale are not finite or the scale is not positive (scale={scale}); "
                           "the run folder is damaged: train it again")
    rotation = transform[:, :3]
    error = float(np.abs(rotation @ rotation.T - np.eye(3)).max())
    if error > ROTATION_TOLERANCE or np.linalg.det(rotation) < 0.0:
        raise DatasetError(f"{path}: the transform's 3x3 part is not a rotation (|R R^T - I| = {error:.2g}, "
                           f"det {np.linalg.det(rotation):.3g}); the run folder is damaged: train it again")
    return SceneTransform(transform, scale)


def is_bounded(dataset: Dataset) -> bool:
    """Blender / RGBA object captures are bounded scenes; real captures are unbounded (contracted)."""
    return dataset.format == "blender" or dataset.has_alpha


def scene_box(dataset: Dataset) -> np.ndarray:
    """[2, 3] scene box in the normalised frame: +-1.5 for bounded (Blender) scenes, the contraction's unit cube
    +-1 otherwise."""
    half = BLENDER_AABB if is_bounded(dataset) else 1.0
    return np.array([[-half] * 3, [half] * 3])


def normalize_scene(dataset: Dataset, centre: str = "auto") -> tuple[SceneTransform, np.ndarray]:
    """The dataset->scene map and the scene box [2, 3] in the normalised frame.

    Bounded (Blender): identity, scale 1, box +-1.5 (nerfstudio's blender dataparser). Unbounded: box +-1 (the
    contraction's unit cube); rotate the mean camera up-vector onto +z, then by ``centre`` (``DataConfig.
    scene_centre``; see ``scene_centre.py``): "poses" = centre on the mean camera position and scale so the
    farthest camera lies at distance 1 along some axis (nerfstudio's defaults); "focus" = centre on the point
    closest to the optical axes and scale by :func:`~nerfstage.nerf.scene_centre.focus_scale`; "auto" = focus
    for inward-looking captures, else poses. ``SceneTransform.centre`` says which was used.
    """
    poses = dataset.world_from_cams()  # [N, 4, 4]
    if is_bounded(dataset):
        eye = np.eye(4)[:3]
        return SceneTransform(eye, 1.0, "identity"), scene_box(dataset)
    up = poses[:, :3, 1].mean(axis=0)  # OpenGL camera y = up
    up = up / max(np.linalg.norm(up), 1e-12)
    rotation = _rotation_onto(up, np.array([0.0, 0.0, 1.0]))
    method, focus = choose_centre(dataset, centre)
    point = focus.point if method == "focus" else poses[:, :3, 3].mean(axis=0)  # [3]
    transform = np.concatenate([rotation, (-rotation @ point)[:, None]], axis=1)  # [3, 4]
    if method == "focus":
        scale = focus_scale(focus)
    else:
        extent = float(np.abs(SceneTransform(transform, 1.0).apply(poses)[:, :3, 3]).max())
        scale = 1.0 / extent if extent > 1e-9 else 1.0
    return SceneTransform(transform, scale, method), scene_box(dataset)


def _rotation_onto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[3, 3] rotation taking unit vector ``a`` onto unit vector ``b``."""
    if np.dot(a, b) < -1.0 + 1e-9:  # opposite: rotate 180 degrees about x
        return np.diag([1.0, -1.0, -1.0])
    rot, _ = Rotation.align_vectors(b[None], a[None])
    return rot.as_matrix()


def split_indices(dataset: Dataset, hold_every: int = 8) -> tuple[list[int], list[int], str]:
    """(train indices, held-out indices, split name): the dataset's own test split when it has one, otherwise
    every ``hold_every``-th frame (0, 8, 16, ... as nerfstudio / mip-NeRF hold out)."""
    n = len(dataset.frames)
    if dataset.splits.get("test"):
        test = sorted(dataset.splits["test"])
        train = sorted(dataset.splits.get("train") or [i for i in range(n) if i not in set(test)])
        return train, test, "test"
    held = [i for i in range(n) if i % hold_every == 0] if n > 1 else []
    train = [i for i in range(n) if i not in set(held)]
    return train, held, f"every-{hold_every}th"


def validate_dataset(dataset: Dataset) -> None:
    """One clear DatasetError for an unusable dataset: no frames, non-finite poses, bad focal lengths."""
    if not dataset.frames:
        raise DatasetError(f"{dataset.root}: the dataset has no frames with an existing image; expected >= 2")
    for frame in dataset.frames:
        pose = np.asarray(frame.world_from_cam, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise DatasetError(f"{frame.image_path}: transform_matrix is not a finite 4x4 matrix: {pose.tolist()}")
        intr = frame.intrinsics
        values = (intr.fx, intr.fy, intr.cx, intr.cy)
        if not all(math.isfinite(v) for v in values) or intr.fx <= 0 or intr.fy <= 0:
            raise DatasetError(f"{frame.image_path}: focal length fl_x={intr.fx} fl_y={intr.fy}; expected > 0")
        _check_image_size(frame)


def _check_image_size(frame: Frame) -> None:
    """The image file's size (read from its header) must be the size its camera states."""
    try:
        with PIL.Image.open(frame.image_path) as image:
            w, h = image.size
    except (OSError, ValueError) as err:
        raise DatasetError(f"{frame.image_path}: cannot read this image ({err})") from None
    intr = frame.intrinsics
    if (w, h) != (intr.width, intr.height):
        raise DatasetError(_size_message(frame, w, h))


def _size_message(frame: Frame, w: int, h: int) -> str:
    intr = frame.intrinsics
    return (
        f"{frame.image_path}: image is {w}x{h} but its camera says {intr.width}x{intr.height}; "
        "images of different sizes need per-frame intrinsics (w, h, fl_x, fl_y, cx, cy in each frame)"
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU -> DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} requested but torch.cuda.is_available() is False; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DeviceError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


@dataclass
class ViewSet:
    """Posed views in memory, every pixel in one flat buffer (views may differ in size)."""

    pixels: Tensor
    """[P, C] uint8, C = 3 (RGB) or 4 (RGBA), views concatenated in row-major order."""
    offsets: Tensor
    """[V + 1] int64: view v owns pixels[offsets[v]:offsets[v + 1]]."""
    widths: Tensor
    """[V] int64 view widths."""
    heights: Tensor
    """[V] int64 view heights."""
    camera_index: Tensor
    """[V] int64 index of the view's camera in the direction tables."""
    table: Tensor
    """[Q, 2] float32 normalised OpenCV image coordinates (x/z, y/z) of every pixel of every distinct camera."""
    table_offsets: Tensor
    """[K] int64 start of each camera's rows in ``table``."""
    world_from_cams: Tensor
    """[V, 3, 4] float32 camera-to-world, OpenCV camera axes, normalised scene frame."""
    frame_indices: list[int]
    """Index of each view in ``Dataset.frames``."""
    names: list[str]
    """Image file name of each view (for saved renders)."""

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[1] == 4

    def __len__(self) -> int:
        return len(self.frame_indices)

    def to(self, device: torch.device) -> ViewSet:
        """A copy with the tensors on ``device``."""
        fields = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return ViewSet(**fields)

    def rays(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rays of flat pixel indices [n] -> (origins [n, 3], unit directions [n, 3], view indices [n],
        colours [n, C] float in [0, 1])."""
        view = torch.searchsorted(self.offsets, flat, right=True) - 1  # [n]
        local = flat - self.offsets[view]  # [n]
        coords = self.table[self.table_offsets[self.camera_index[view]] + local]  # [n, 2]
        dirs_cam = torch.cat([coords, torch.ones_like(coords[:, :1])], dim=-1)  # [n, 3]
        pose = self.world_from_cams[view]  # [n, 3, 4]
        dirs = torch.einsum("nij,nj->ni", pose[:, :, :3], dirs_cam)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        colours = self.pixels[flat].float() / 255.0
        return pose[:, :, 3], dirs, view, colours

    def subset(self, views: list[int]) -> ViewSet:
        """A ViewSet of only the views ``views`` (indices into this set)."""
        parts = [self.pixels[int(self.offsets[v]) : int(self.offsets[v + 1])] for v in views]
        sizes = torch.tensor([0] + [len(p) for p in parts], device=self.offsets.device)
        return ViewSet(
            pixels=torch.cat(parts),
            offsets=torch.cumsum(sizes, 0),
            widths=self.widths[views],
            heights=self.heights[views],
            camera_index=self.camera_index[views],
            table=self.table,
            table_offsets=self.table_offsets,
            world_from_cams=self.world_from_cams[views],
            frame_indices=[self.frame_indices[v] for v in views],
            names=[self.names[v] for v in views],
        )

    def view_rays(self, v: int) -> tuple[Tensor, Tensor, Tensor]:
        """All rays of view ``v`` in row-major order: origins [H*W, 3], directions [H*W, 3], colours [H*W, C]."""
        flat = torch.arange(int(self.offsets[v]), int(self.offsets[v + 1]), device=self.offsets.device)
        origins, dirs, _, colours = self.rays(flat)
        return origins, dirs, colours

    def view_shape(self, v: int) -> tuple[int, int]:
        """(height, width) of view ``v``."""
        return int(self.heights[v]), int(self.widths[v])


def camera_table(intr: Intrinsics) -> np.ndarray:
    """[H*W, 2] float32 normalised OpenCV coordinates (x/z, y/z) of the pixel centres of one camera, row-major:
    the unit rays of the foundation's camera model (``camera_from_intrinsics(intr).unproject``, float64) divided
    by their z: the points OpenCV's ``undistortPoints`` / ``fisheye.undistortPoints`` return (to ~1e-13).

    A table of x/z cannot hold a ray 90 degrees or more off the optical axis (a fisheye seeing more than 180
    degrees): OpenCV returned mirrored points there (and, for fisheye pixels whose distorted angle theta_d
    exceeds 90 degrees, points clamped to theta_d = 90 degrees). Such cameras, and pixels the distortion model
    cannot invert, raise a DatasetError instead of training on wrong rays."""
    camera = camera_from_intrinsics(intr)
    chunks = pixel_chunks(camera, TABLE_CHUNK)
    parts = [camera.unproject(pixel_centers(camera, chunk, torch.float64)) for chunk in chunks]
    directions, valid = torch.cat([d for d, _ in parts]), torch.cat([v for _, v in parts])  # [H*W, 3] unit, [H*W]
    bad = ~valid | ~(directions[:, 2] > MIN_TABLE_Z)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise DatasetError(
            f"{intr.model} camera {intr.width}x{intr.height} (fl_x={intr.fx}): {int(bad.sum())} pixels, e.g. "
            f"column {first % intr.width} row {first // intr.width}, look 90 degrees or more off the optical axis "
            "or cannot be undistorted; expected every pixel within 90 degrees (check the distortion values)"
        )
    return (directions[:, :2] / directions[:, 2:]).to(torch.float32).numpy()


def read_image(frame: Frame, max_side: int) -> tuple[np.ndarray, Intrinsics]:
    """Image [H, W, 3|4] uint8 (RGB/RGBA) downscaled by an integer factor so its longer side <= ``max_side``
    (0 = full size), and the frame's intrinsics scaled to match."""
    img = cv2.imread(str(frame.image_path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{frame.image_path}: cannot read this image (missing or not an image file)")
    img = _to_rgb(img, frame.image_path)
    intr = frame.intrinsics
    h, w = img.shape[:2]
    if (w, h) != (intr.width, intr.height):
        raise DatasetError(_size_message(frame, w, h))
    factor = max(1, math.ceil(max(h, w) / max_side)) if max_side > 0 else 1
    if factor > 1:
        size = (round(w / factor), round(h / factor))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        intr = _rescaled(intr, size)
    return img, intr


def _rescaled(intr: Intrinsics, size: tuple[int, int]) -> Intrinsics:
    """Intrinsics for the image resized to ``size`` = (width, height)."""
    sx, sy = size[0] / intr.width, size[1] / intr.height
    scaled = intr.scaled(sx)
    return Intrinsics(**{**scaled.__dict__, "fy": intr.fy * sy, "cy": intr.cy * sy, "width": size[0],
                         "height": size[1]})


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """OpenCV BGR(A) / grey, 8 or 16 bit -> RGB(A) uint8."""
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DatasetError(f"{path}: unsupported image type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        img = img[:, :, None].repeat(3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_views(dataset: Dataset, indices: list[int], scene: SceneTransform, max_side: int = 0) -> ViewSet:
    """Read the frames ``indices`` of ``dataset`` into a :class:`ViewSet` in the normalised scene frame."""
    images, cams, cam_ids = [], {}, []
    for i in indices:
        img, intr = read_image(dataset.frames[i], max_side)
        images.append(img)
        cam_ids.append(cams.setdefault(intr, len(cams)))
    channels = 4 if dataset.has_alpha or any(im.shape[2] == 4 for im in images) else 3
    flat = [_channels(im, channels).reshape(-1, channels) for im in images]
    sizes = np.array([0] + [len(f) for f in flat])
    tables = [camera_table(intr) for intr in cams]
    table_sizes = np.array([0] + [len(t) for t in tables[:-1]])
    poses = scene.apply(np.stack([dataset.frames[i].world_from_cam for i in indices]))
    poses_cv = convert_camera_axes(poses)[:, :3, :]  # [V, 3, 4]
    return ViewSet(
        pixels=torch.from_numpy(np.concatenate(flat)),
        offsets=torch.from_numpy(np.cumsum(sizes)).long(),
        widths=torch.tensor([im.shape[1] for im in images], dtype=torch.long),
        heights=torch.tensor([im.shape[0] for im in images], dtype=torch.long),
        camera_index=torch.tensor(cam_ids, dtype=torch.long),
        table=torch.from_numpy(np.concatenate(tables)),
        table_offsets=torch.from_numpy(np.cumsum(table_sizes)).long(),
        world_from_cams=torch.from_numpy(poses_cv).float(),
        frame_indices=list(indices),
        names=[dataset.frames[i].image_path.name for i in indices],
    )


def _channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Add an opaque alpha channel when the set is RGBA but this image is RGB."""
    if img.shape[2] == channels:
        return img
    return np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)


def composite(colours: Tensor, background: Tensor) -> Tensor:
    """[n, 3|4] colours (RGBA: straight alpha) over background [n, 3] or [3] -> [n, 3]."""
    if colours.shape[-1] == 3:
        return colours
    alpha = colours[:, 3:4]
    return colours[:, :3] * alpha + background * (1.0 - alpha)


class RayBatcher:
    """Uniformly random pixels over all training views, drawn from its own seeded generator (resumable)."""

    def __init__(self, views: ViewSet, seed: int, background: str = "random"):
        self.views = views
        self.background = background
        self.num_pixels = int(views.offsets[-1])
        self.device = views.pixels.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def next(self, num_rays: int) -> dict[str, Tensor]:
        """One batch: origins, directions [n, 3], image_indices [n], rgb [n, 3] (over a random background
        for RGBA data with ``background="random"``, as instant-ngp trains; "white" / "black" are constant),
        background [n, 3] (None for RGB data)."""
        flat = torch.randint(0, self.num_pixels, (num_rays,), generator=self.generator, device=self.device)
        origins, dirs, view, colours = self.views.rays(flat)
        batch = {"origins": origins, "directions": dirs, "image_indices": view, "background": None}
        if self.views.has_alpha:
            bg = torch.rand((num_rays, 3), generator=self.generator, device=self.device)
            if self.background != "random":
                bg = torch.full_like(bg, 1.0 if self.background == "white" else 0.0)
            batch["background"] = bg
            colours = composite(colours, bg)
        batch["rgb"] = colours
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
