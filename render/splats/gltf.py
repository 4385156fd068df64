"""Gaussian splats as glTF 2.0 (``.glb`` binary or ``.gltf`` + ``.bin``) with the Khronos extension
``KHR_gaussian_splatting`` (kernel ``ellipse``), written with pygltflib.

One mesh with one ``POINTS`` primitive; per splat (all float32, one buffer view each):

* ``POSITION`` -- the mean;
* ``KHR_gaussian_splatting:ROTATION`` -- unit quaternion in glTF's x, y, z, w order;
* ``KHR_gaussian_splatting:SCALE`` -- *linear* standard deviations (``exp(log_scales)``);
* ``KHR_gaussian_splatting:OPACITY`` -- linear opacity in [0, 1] (``sigmoid(opacity_logits)``);
* ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_m`` -- the SH coefficients (r, g, b), degree 0 always, higher degrees
  complete; within a degree, order m from -l to l (the basis of :mod:`nerfstage.nerf.sh`, Condon-Shortley phase,
  colour ``SH . Y(d) + 0.5``, exactly the extension's);
* ``COLOR_0`` -- the fallback colour for viewers without the extension: the diffuse colour (``0.2821 * f_dc +
  0.5``, clamped) converted to linear as glTF requires, alpha = opacity.

``colorSpace`` is ``srgb_rec709_display``: the splat colours are sRGB-encoded display values, like the training
photos. Axes: glTF is right-handed Y-up, so the splats (dataset frame, Z-up) are written rotated by
:data:`.transform.Y_UP_FROM_Z_UP`, positions, orientations and SH colour alike -- the same rotation as the mesh
GLB; the node carries no transform. Units: the dataset's (metres when the capture's scale is known).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import torch

from ...core.errors import InputError
from ...core.files import read_gltf
from .model import GaussianSplats
from .transform import Y_UP_FROM_Z_UP, rotate_splats

EXTENSION = "KHR_gaussian_splatting"
ARRAY_BUFFER = 34962
FLOAT = 5126
UNSIGNED_BYTE = 5121
SH_C0 = 0.28209479177387814


def sh_attribute_names(sh_degree: int) -> list[str]:
    """Attribute semantics of the SH coefficients, in our coefficient order (k = 0 .. (degree+1)^2 - 1)."""
    return [f"{EXTENSION}:SH_DEGREE_{lv}_COEF_{m}" for lv in range(sh_degree + 1) for m in range(2 * lv + 1)]


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _attributes(splats: GaussianSplats) -> dict[str, np.ndarray]:
    """Per-splat arrays by attribute semantic (already Y-up)."""
    s = splats.detach().to("cpu")
    wxyz = torch.nn.functional.normalize(s.quats.double(), dim=-1).numpy()
    opacity = torch.sigmoid(s.opacity_logits.double()).numpy()
    sh = s.sh.double().numpy()
    diffuse = _srgb_to_linear(sh[:, 0, :] * SH_C0 + 0.5)
    out = {"POSITION": s.means.double().numpy(),
           f"{EXTENSION}:ROTATION": np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1),
           f"{EXTENSION}:SCALE": np.exp(s.log_scales.double().numpy()),
           f"{EXTENSION}:OPACITY": opacity,
           "COLOR_0": np.round(np.concatenate([diffuse, opacity[:, None]], axis=1) * 255.0)}
    for k, name in enumerate(sh_attribute_names(s.sh_degree)):
        out[name] = sh[:, k, :]
    return out


def _build(splats: GaussianSplats) -> tuple[pygltflib.GLTF2, bytes]:
    """The glTF document (buffer 0 without uri) and its binary buffer."""
    if splats.num_splats == 0:
        raise InputError("splats: there are no splats to write")
    attrs = _attributes(rotate_splats(splats, Y_UP_FROM_Z_UP))
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="nerfstage", version="2.0"),
                           extensionsUsed=[EXTENSION], scene=0, scenes=[pygltflib.Scene(nodes=[0])],
                           nodes=[pygltflib.Node(mesh=0, name="splats")])
    blob, semantics = bytearray(), {}
    for name, values in attrs.items():
        ubyte = name == "COLOR_0"
        data = values.astype(np.uint8 if ubyte else np.float32)
        width = 1 if data.ndim == 1 else data.shape[1]
        accessor = pygltflib.Accessor(bufferView=len(gltf.bufferViews), componentType=UNSIGNED_BYTE if ubyte else FLOAT,
                                      normalized=True if ubyte else None, count=len(data),
                                      type={1: "SCALAR", 3: "VEC3", 4: "VEC4"}[width])
        if name == "POSITION":  # required for POSITION
            accessor.min, accessor.max = data.min(axis=0).tolist(), data.max(axis=0).tolist()
        gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=data.nbytes,
                                                     target=ARRAY_BUFFER))
        blob += data.tobytes()
        blob += b"\0" * (-len(blob) % 4)
        semantics[name] = len(gltf.accessors)
        gltf.accessors.append(accessor)
    primitive = pygltflib.Primitive(attributes=pygltflib.Attributes(), mode=pygltflib.POINTS,
                                    extensions={EXTENSION: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                                                            "projection": "perspective",
                                                            "sortingMethod": "cameraDistance"}})
    for name, index in semantics.items():
        setattr(primitive.attributes, name, index)
    gltf.meshes.append(pygltflib.Mesh(primitives=[primitive], name="splats"))
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    return gltf, bytes(blob)


def glb_bytes(splats: GaussianSplats) -> bytes:
    """A binary glTF (.glb) holding the splats."""
    gltf, blob = _build(splats)
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def gltf_files(splats: GaussianSplats, path: Path) -> dict[Path, bytes]:
    """``{path.bin: buffer, path: JSON}`` of a text glTF (.gltf) whose buffer is the ``.bin`` beside it."""
    gltf, blob = _build(splats)
    bin_path = Path(path).with_suffix(".bin")
    gltf.buffers[0].uri = bin_path.name
    return {bin_path: blob, Path(path): gltf.gltf_to_json().encode()}


def read_gltf_splats(path: Path) -> GaussianSplats:
    """Read splats from a ``.glb``/``.gltf`` written with ``KHR_gaussian_splatting`` (float attributes) back into
    the dataset frame."""
    path = Path(path)
    gltf = read_gltf(path)
    primitive = gltf.meshes[0].primitives[0] if gltf.meshes and gltf.meshes[0].primitives else None
    if primitive is None or EXTENSION not in (primitive.extensions or {}):
        raise InputError(f"{path}: its first primitive has no {EXTENSION} extension")
    attributes = primitive.attributes.__dict__
    blob = gltf.binary_blob() if path.suffix.lower() == ".glb" else (path.parent / gltf.buffers[0].uri).read_bytes()

    def array(name: str) -> np.ndarray:
        if attributes.get(name) is None:
            raise InputError(f"{path}: missing attribute {name}")
        accessor = gltf.accessors[attributes[name]]
        view = gltf.bufferViews[accessor.bufferView]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[accessor.type]
        data = np.frombuffer(blob, np.float32, accessor.count * width, view.byteOffset + (accessor.byteOffset or 0))
        return data.reshape(accessor.count, width)

    degree = max(d for d in range(4) if all(attributes.get(n) is not None for n in sh_attribute_names(d)))
    xyzw = array(f"{EXTENSION}:ROTATION").astype(np.float64)
    opacity = np.clip(array(f"{EXTENSION}:OPACITY")[:, 0].astype(np.float64), 1e-7, 1 - 1e-7)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
    splats = GaussianSplats(means=t(array("POSITION")), quats=t(np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)),
                            log_scales=t(np.log(array(f"{EXTENSION}:SCALE").astype(np.float64))),
                            opacity_logits=t(np.log(opacity / (1 - opacity))),
                            sh=t(np.stack([array(n) for n in sh_attribute_names(degree)], axis=1)))
    return rotate_splats(splats, Y_UP_FROM_Z_UP.T)
