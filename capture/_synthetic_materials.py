"""Albedo textures a camera could film: the synthetic room's plank floor, panelled ceiling and painted walls with a
window, a door, a picture and a bookshelf, and the objects' wood, stone, marble and painted finishes.

Every texture is [rows, cols, 3] float32 albedo in [0.03, 0.97], drawn in metres (``texel_m`` metres per texel)
with soft (one-texel) edges and smooth, low-amplitude variation (wood grain, plaster mottling, marble veins) that
gives structure-from-motion corners without per-texel noise. ``room_textures`` and ``object_textures`` return the
six textures of a primitive in the order of its parts (``2 * axis + (normal > 0)``), in the layout that
``Primitive._lookup`` reads: face ``k`` has rows along local axis ``(k // 2 + 2) % 3`` and columns along
``(k // 2 + 1) % 3``.
"""

from __future__ import annotations

import numpy as np

from ._synthetic_texture import value_noise

WOOD = np.array([[0.62, 0.43, 0.26], [0.55, 0.36, 0.2], [0.7, 0.52, 0.33], [0.5, 0.33, 0.2]], np.float32)


def _grid(rows: int, cols: int, texel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre coordinates in metres: vertical [rows, cols] and horizontal [rows, cols]."""
    v, h = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return (v + 0.5) * texel_m, (h + 0.5) * texel_m


def _step(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step 0 -> 1 around x = 0 over ``width``."""
    return np.clip(0.5 + x / width, 0.0, 1.0)


def _rect(v: np.ndarray, h: np.ndarray, v0: float, v1: float, h0: float, h1: float, soft: float) -> np.ndarray:
    """[rows, cols] coverage of the rectangle v in [v0, v1], h in [h0, h1], edges ``soft`` metres wide."""
    return _step(v - v0, soft) * _step(v1 - v, soft) * _step(h - h0, soft) * _step(h1 - h, soft)


def _paint(image: np.ndarray, weight: np.ndarray, colour) -> np.ndarray:
    """image [rows, cols, 3] with ``colour`` ([3] or [rows, cols, 3]) laid over it with coverage ``weight``."""
    return image + weight[..., None] * (np.asarray(colour, np.float32) - image)


def _mottle(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, wavelength_m: float,
            amount: float) -> np.ndarray:
    """[rows, cols, 1] smooth brightness factor 1 +- ``amount`` (a few octaves, nothing finer than 1/8 of it)."""
    noise = value_noise(shape, rng, wavelength_m / texel_m, octaves=3, gain=0.5)
    return (1.0 + amount * np.clip(noise, -2.5, 2.5) / 2.5)[..., None]


def planks(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, width_m: float = 0.18,
           length_m: float = 1.2, colours: np.ndarray = WOOD) -> np.ndarray:
    """Wooden planks running along the columns: staggered butt joints, a tone per plank, grain along it."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    row = np.floor(v / width_m).astype(np.int64)
    offset = rng.uniform(0.0, length_m, size=row.max() + 2)[row]
    board = np.floor((h + offset) / length_m).astype(np.int64)
    tone = colours[(row * 7 + board * 3 + (row * board) % 5) % len(colours)]
    tone = tone * rng.uniform(0.9, 1.1, size=(row.max() + 2, board.max() + 2, 1))[row, board].astype(np.float32)
    warp = value_noise(shape, rng, 0.15 / texel_m, octaves=2)  # grain lines along the plank, gently wavy
    phase = (v % width_m) / 0.022 + 1.5 * warp + 3.0 * row
    grain = 0.5 + 0.5 * np.sin(2.0 * np.pi * phase)
    knots = _step(0.5 * np.abs(value_noise(shape, rng, 0.3 / texel_m, octaves=2)) - 0.9, 0.2)
    image = tone * (1.0 - 0.22 * grain ** 3 - 0.25 * knots)[..., None]
    seam_v = np.minimum(v % width_m, width_m - v % width_m)
    seam_h = np.minimum((h + offset) % length_m, length_m - (h + offset) % length_m)
    seam = np.maximum(_step(0.006 - seam_v, texel_m), _step(0.005 - seam_h, texel_m))
    image = _paint(image, 0.85 * seam, [0.16, 0.1, 0.06])
    across = np.minimum(np.abs(v % width_m - 0.3 * width_m), np.abs(v % width_m - 0.7 * width_m))
    nails = _step(0.008 - np.hypot(across, seam_h - 0.025), texel_m)  # two nails each side of every joint
    return _paint(image, nails, [0.12, 0.1, 0.09])


def ceiling(shape: tuple[int, int], texel_m: float, rng: np.random.Generator) -> np.ndarray:
    """Off-white ceiling tiles in a 0.6 m grid with grey joints and a round light in some tiles."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    image = np.broadcast_to(np.float32([0.88, 0.87, 0.83]), (rows, cols, 3)) * _mottle(shape, texel_m, rng, 0.3,
                                                                                         0.04)
    joint = np.maximum(_step(0.012 - np.minimum(v % 0.6, 0.6 - v % 0.6), texel_m),
                       _step(0.012 - np.minimum(h % 0.6, 0.6 - h % 0.6), texel_m))
    image = _paint(image, joint, [0.55, 0.55, 0.55])
    cv, ch = v % 1.8 - 0.9, h % 1.8 - 0.9  # a light in every third tile
    return _paint(image, _step(0.18 - np.hypot(cv, ch), texel_m), [0.97, 0.97, 0.92])


def _window(image, v, h, h0: float, soft: float):
    """A 1.3 x 1.2 m window with a white frame, a cross mullion and a sky gradient behind the glass."""
    v0, v1, h1 = 0.9, 2.1, h0 + 1.3
    sky = np.stack([0.55 + 0.15 * (v - v0), 0.72 + 0.1 * (v - v0), 0.92 + 0.0 * v], -1).astype(np.float32)
    image = _paint(image, _rect(v, h, v0 - 0.06, v1 + 0.06, h0 - 0.06, h1 + 0.06, soft), [0.95, 0.95, 0.93])
    image = _paint(image, _rect(v, h, v0, v1, h0, h1, soft), np.clip(sky, 0, 1))
    hill = v0 + 0.25 + 0.12 * np.sin((h - h0) * 5.0)  # distant hills seen through the glass
    image = _paint(image, _rect(v, h, v0, v1, h0, h1, soft) * _step(hill - v, soft), [0.35, 0.55, 0.3])
    mullion = np.maximum(_rect(v, h, v0, v1, (h0 + h1) / 2 - 0.03, (h0 + h1) / 2 + 0.03, soft),
                         _rect(v, h, (v0 + v1) / 2 - 0.03, (v0 + v1) / 2 + 0.03, h0, h1, soft))
    return _paint(image, mullion, [0.95, 0.95, 0.93])


def _door(image, v, h, h0: float, soft: float, colour):
    """A 0.9 x 2.05 m panelled door with a frame and a brass knob."""
    h1 = h0 + 0.9
    image = _paint(image, _rect(v, h, 0.0, 2.12, h0 - 0.07, h1 + 0.07, soft), [0.93, 0.92, 0.88])
    image = _paint(image, _rect(v, h, 0.0, 2.05, h0, h1, soft), colour)
    for pv0, pv1 in ((0.15, 0.9), (1.05, 1.9)):
        for ph0, ph1 in ((0.1, 0.42), (0.48, 0.8)):
            panel = _rect(v, h, pv0, pv1, h0 + ph0, h0 + ph1, soft)
            inner = _rect(v, h, pv0 + 0.025, pv1 - 0.025, h0 + ph0 + 0.025, h0 + ph1 - 0.025, soft)
            image = _paint(image, panel - inner, np.asarray(colour) * 0.7)
    return _paint(image, _step(0.035 - np.hypot(v - 1.0, h - (h1 - 0.09)), soft), [0.85, 0.68, 0.25])


def _picture(image, v, h, h0: float, soft: float, rng: np.random.Generator):
    """A framed landscape (sky, sun, two mountains, a lake) 1.0 x 0.7 m, its bottom at 1.2 m."""
    v0, v1, h1 = 1.2, 1.9, h0 + 1.0
    image = _paint(image, _rect(v, h, v0 - 0.06, v1 + 0.06, h0 - 0.06, h1 + 0.06, soft), [0.25, 0.15, 0.08])
    x, y = (h - h0) / (h1 - h0), (v - v0) / (v1 - v0)  # 0..1 across the canvas, y up
    canvas = np.stack([0.95 - 0.35 * y, 0.75 - 0.2 * y, 0.45 + 0.4 * y], -1).astype(np.float32)
    peak = rng.uniform(0.25, 0.4)
    for centre, top, colour in ((peak, 0.85, [0.35, 0.3, 0.45]), (peak + 0.35, 0.65, [0.25, 0.42, 0.3])):
        canvas = _paint(canvas, _step(top - 1.6 * np.abs(x - centre) - y, soft / (v1 - v0)), colour)
    canvas = _paint(canvas, _step(0.08 - np.hypot(x - 0.78, (y - 0.78) * 0.7), 0.01), [0.98, 0.85, 0.3])
    canvas = _paint(canvas, _step(0.22 - y, 0.01), [0.2, 0.45, 0.65])
    return _paint(image, _rect(v, h, v0, v1, h0, h1, soft), canvas)


def _bookshelf(image, v, h, h0: float, soft: float, rng: np.random.Generator):
    """A 1.4 m wide, 1.8 m tall bookshelf: wooden frame, four shelves of books in many colours and heights."""
    h1 = h0 + 1.4
    image = _paint(image, _rect(v, h, 0.0, 1.8, h0, h1, soft), [0.45, 0.3, 0.18])
    for shelf in range(4):
        base = 0.08 + 0.43 * shelf
        image = _paint(image, _rect(v, h, base, base + 0.4, h0 + 0.04, h1 - 0.04, soft), [0.2, 0.13, 0.08])
        x = h0 + 0.06
        while x < h1 - 0.1:
            width, height = rng.uniform(0.025, 0.06), rng.uniform(0.22, 0.37)
            colour = rng.uniform(0.15, 0.85, 3)
            image = _paint(image, _rect(v, h, base, base + height, x, x + width, soft), colour)
            image = _paint(image, _rect(v, h, base + height - 0.06, base + height - 0.045, x, x + width, soft),
                           np.clip(colour + 0.35, 0, 1))  # a band on the spine
            x += width + rng.uniform(0.0, 0.01)
    return image


def wallpaper(v: np.ndarray, h: np.ndarray, rng: np.random.Generator, paint, motif, pitch: float = 0.22,
              soft: float = 0.01) -> np.ndarray:
    """Patterned wallpaper: small flowers (four to six petals, turned at random, in ``motif`` or one of two
    related colours) in a half-drop lattice of ``pitch`` metres, each a little displaced, with a yellow heart."""
    column = np.floor(h / pitch).astype(np.int64)
    drop = 0.5 * pitch * (column % 2)
    row = np.floor((v + drop) / pitch).astype(np.int64)
    cells = (row.max() + 2, column.max() + 2)
    jitter = rng.uniform(-0.15, 0.15, size=(*cells, 2)) * pitch
    petals = rng.integers(4, 7, size=cells)[row, column]
    turn = rng.uniform(0.0, 2.0 * np.pi, size=cells)[row, column]
    motif = np.asarray(motif, np.float32)
    palette = np.stack([motif, np.clip(motif * 1.5, 0, 1), motif[[2, 0, 1]]])  # [3, 3]
    colour = palette[rng.integers(0, 3, size=cells)[row, column]]
    dy = (v + drop) % pitch - 0.5 * pitch - jitter[row, column, 0]
    dx = h % pitch - 0.5 * pitch - jitter[row, column, 1]
    radius, angle = np.hypot(dx, dy), np.arctan2(dy, dx)
    petal = _step(0.3 * pitch * (0.55 + 0.45 * np.cos(petals * angle + turn)) - radius, soft)
    image = np.broadcast_to(np.float32(paint), (*v.shape, 3)).copy()
    image = _paint(image, petal, colour)
    return _paint(image, _step(0.05 * pitch - radius, soft), [0.95, 0.9, 0.6])


def _abstract(image, v, h, v0: float, h0: float, size: tuple[float, float], soft: float, rng: np.random.Generator):
    """A framed abstract painting: coloured discs, bars and blocks on a pale canvas."""
    height, width = size
    v1, h1 = v0 + height, h0 + width
    image = _paint(image, _rect(v, h, v0 - 0.04, v1 + 0.04, h0 - 0.04, h1 + 0.04, soft), [0.1, 0.1, 0.1])
    image = _paint(image, _rect(v, h, v0, v1, h0, h1, soft), [0.93, 0.9, 0.82])
    for _ in range(9):
        colour = rng.uniform(0.05, 0.95, 3)
        cv, ch = rng.uniform(v0 + 0.05, v1 - 0.05), rng.uniform(h0 + 0.05, h1 - 0.05)
        extent = rng.uniform(0.03, 0.12)
        inside = _rect(v, h, v0, v1, h0, h1, soft)
        if rng.uniform() < 0.5:
            shape = _step(extent - np.hypot(v - cv, h - ch), soft)
        else:
            shape = _rect(v, h, cv - extent, cv + extent * rng.uniform(0.3, 1.5), ch - extent * 0.6, ch + extent,
                          soft)
        image = _paint(image, shape * inside, colour)
    return image


def wall(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, paint, features: list[str],
         motif=None) -> np.ndarray:
    """A wall [rows = height up from the floor, cols = along it]: wallpaper with ``motif`` flowers (or plain
    mottled paint when None), a skirting board and ``features`` (window / door / picture / bookshelf / art)
    spaced along it, with small abstract paintings between them."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    soft = texel_m
    if motif is None:
        image = np.broadcast_to(np.float32(paint), (rows, cols, 3)) * _mottle(shape, texel_m, rng, 0.2, 0.12)
    else:
        image = wallpaper(v, h, rng, paint, motif, soft=soft) * _mottle(shape, texel_m, rng, 0.4, 0.06)
    image = _paint(image, _rect(v, h, 0.0, 0.12, 0.0, cols * texel_m, soft), [0.92, 0.91, 0.87])
    image = _paint(image, _rect(v, h, 0.115, 0.13, 0.0, cols * texel_m, soft), [0.6, 0.58, 0.55])
    length = cols * texel_m
    for i, name in enumerate(features):
        start = length * (i + 0.5) / len(features) - 0.6 + rng.uniform(-0.3, 0.3)
        if name == "window":
            image = _window(image, v, h, start, soft)
        elif name == "door":
            image = _door(image, v, h, start, soft, rng.uniform(0.3, 0.7, 3))
        elif name == "picture":
            image = _picture(image, v, h, start, soft, rng)
        else:
            image = _bookshelf(image, v, h, start, soft, rng)
    for i in range(len(features) + 1):  # small paintings between and beside the features
        centre = length * i / len(features) + rng.uniform(-0.15, 0.15)
        size = (rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.5))
        image = _abstract(image, v, h, rng.uniform(1.35, 2.95 - size[0] - 0.1) if i % 2 else 2.25,
                          np.clip(centre - size[1] / 2, 0.1, length - size[1] - 0.1), size, soft, rng)
    return image


def _face_shape(k: int, half: tuple[float, float, float], texel_m: float) -> tuple[int, int]:
    size = [int(np.ceil(2.0 * x / texel_m)) + 2 for x in half]
    return size[(k // 2 + 2) % 3], size[(k // 2 + 1) % 3]


def _upright(k: int, half, texel_m: float, make) -> np.ndarray:
    """Face ``k`` of a vertical side drawn by ``make(shape)`` as [rows up, cols along], in ``_lookup``'s layout
    (x faces: rows along z already; y faces: columns along z, so the drawing is transposed)."""
    rows, cols = _face_shape(k, half, texel_m)
    if k // 2 == 0:
        return make((rows, cols))
    return np.ascontiguousarray(make((cols, rows)).transpose(1, 0, 2))


ROOM_WALLS = {0: ([0.78, 0.74, 0.62], ["window", "picture"], [0.55, 0.35, 0.3]),
              1: ([0.62, 0.7, 0.74], ["bookshelf", "door"], None),
              2: ([0.85, 0.78, 0.66], ["door", "window"], [0.3, 0.45, 0.55]),
              3: ([0.7, 0.74, 0.6], ["picture", "bookshelf"], [0.7, 0.45, 0.25])}
"""Per wall (by inward normal): paint, features along it, wallpaper motif colour (None: plain paint)."""


def rug(image: np.ndarray, v: np.ndarray, h: np.ndarray, centre: tuple[float, float], size: tuple[float, float],
        soft: float, rng: np.random.Generator) -> np.ndarray:
    """A patterned rug laid on ``image``: a red field of cream diamonds holding medallions of varied colours and
    sizes, framed by bands and a zigzag border."""
    dv, dh = v - centre[0], h - centre[1]
    half_v, half_h = size[0] / 2, size[1] / 2
    inside = _rect(v, h, centre[0] - half_v, centre[0] + half_v, centre[1] - half_h, centre[1] + half_h, soft)
    cell_v, cell_h = np.floor((dv + 3.0) / 0.3).astype(np.int64), np.floor((dh + 3.0) / 0.3).astype(np.int64)
    cells = (cell_v.max() + 1, cell_h.max() + 1)
    palette = np.float32([[0.15, 0.22, 0.5], [0.1, 0.4, 0.3], [0.85, 0.55, 0.15], [0.35, 0.15, 0.4]])
    medallion = palette[rng.integers(0, 4, size=cells)[cell_v, cell_h]]
    dot = palette[rng.integers(0, 4, size=cells)[cell_v, cell_h]]
    scale = rng.uniform(0.6, 1.2, size=cells)[cell_v, cell_h]
    field = np.broadcast_to(np.float32([0.6, 0.14, 0.12]), (*v.shape, 3)).copy()
    diamond = np.abs(((dv + 3.0) % 0.3) - 0.15) + np.abs(((dh + 3.0) % 0.3) - 0.15)
    field = _paint(field, _step(0.11 - diamond, soft) - _step(0.08 - diamond, soft), [0.93, 0.85, 0.65])
    field = _paint(field, _step(0.05 * scale - diamond, soft), medallion)
    field = _paint(field, _step(0.018 * scale - np.hypot((dv + 3.0) % 0.3 - 0.15, (dh + 3.0) % 0.3 - 0.15), soft),
                   np.clip(dot + 0.4, 0, 1))
    edge = np.minimum(half_v - np.abs(dv), half_h - np.abs(dh))  # distance to the rug's edge
    for inner, outer, colour in ((0.0, 0.06, [0.15, 0.22, 0.5]), (0.06, 0.1, [0.93, 0.85, 0.65]),
                                 (0.1, 0.22, [0.15, 0.22, 0.5]), (0.22, 0.25, [0.93, 0.85, 0.65])):
        field = _paint(field, _step(edge - inner, soft) * _step(outer - edge, soft), colour)
    zigzag = np.abs(((dv + dh) % 0.12) - 0.06) + np.abs(((dv - dh) % 0.12) - 0.06)
    band = _step(edge - 0.11, soft) * _step(0.21 - edge, soft) * _step(0.04 - zigzag, soft)
    segment = np.floor((dv + dh + 6.0) / 0.12).astype(np.int64) % 3
    field = _paint(field, band, np.float32([[0.9, 0.6, 0.2], [0.9, 0.9, 0.8], [0.5, 0.75, 0.85]])[segment])
    return _paint(image, inside, field)


def room_textures(half: tuple[float, float, float], texel_m: float, rng: np.random.Generator) -> list[np.ndarray]:
    """The room's six faces (by inward normal): walls 0..3 (``ROOM_WALLS``), ceiling 4, plank floor 5 with a rug
    (2.6 x 3.2 m) under the objects."""
    out = []
    for k in range(4):
        paint, features, motif = ROOM_WALLS[k]
        out.append(_upright(k, half, texel_m, lambda shape, p=paint, f=features, m=motif: wall(
            shape, texel_m, rng, p, f, m)))
    out.append(ceiling(_face_shape(4, half, texel_m), texel_m, rng))
    floor_shape = _face_shape(5, half, texel_m)
    v, h = _grid(*floor_shape, texel_m)  # rows along y, columns along x, from the room's -y / -x walls
    out.append(rug(planks(floor_shape, texel_m, rng), v, h, (half[1], half[0]), (2.6, 3.2), texel_m, rng))
    return [np.clip(t, 0.03, 0.97).astype(np.float32) for t in out]


def crate(shape: tuple[int, int], texel_m: float, rng: np.random.Generator) -> np.ndarray:
    """A slatted wooden crate side: horizontal slats in a darker frame with a diagonal brace."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    light = WOOD[[2, 0, 2, 1]] * np.float32(1.1)
    image = planks(shape, texel_m, rng, width_m=0.1, length_m=4.0, colours=light)
    height, width = rows * texel_m, cols * texel_m
    frame = 1.0 - _rect(v, h, 0.07, height - 0.07, 0.07, width - 0.07, texel_m)
    brace = _step(0.035 - np.abs(v - h * height / width), texel_m)
    return _paint(image, np.maximum(frame, brace), [0.42, 0.27, 0.15])


def stone_blocks(shape: tuple[int, int], texel_m: float, rng: np.random.Generator) -> np.ndarray:
    """Grey stone blocks (0.2 x 0.1 m, half-offset rows) with mortar joints and a tone per block."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    course = np.floor(v / 0.1).astype(np.int64)
    hs = h + 0.1 * (course % 2)
    block = np.floor(hs / 0.2).astype(np.int64)
    tones = rng.uniform(0.5, 0.75, size=(course.max() + 1, block.max() + 1))[course, block]
    image = np.stack([tones, tones * 0.97, tones * 0.92], -1).astype(np.float32) * _mottle(shape, texel_m, rng,
                                                                                            0.08, 0.06)
    joint = np.maximum(_step(0.004 - np.minimum(v % 0.1, 0.1 - v % 0.1), texel_m),
                       _step(0.004 - np.minimum(hs % 0.2, 0.2 - hs % 0.2), texel_m))
    return _paint(image, joint, [0.82, 0.8, 0.76])


def marble(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, tint) -> np.ndarray:
    """Polished marble: a pale tint clouded with deeper tones, soft dark veins along warped contour lines."""
    field = value_noise(shape, rng, 0.25 / texel_m, octaves=4, gain=0.5)
    vein = np.exp(-((np.sin(3.0 * field) * 2.5) ** 2))  # thin lines where sin(3 field) = 0
    base = np.broadcast_to(np.float32(tint), (*shape, 3))
    cloud = _mottle(shape, texel_m, rng, 0.5, 0.35)  # broad clouds of a deeper tone between the veins
    return _paint(base * cloud, 0.8 * vein.astype(np.float32), np.asarray(tint, np.float32) * 0.35)


def painted_stripes(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, colours) -> np.ndarray:
    """Broad soft-edged stripes of a few colours (a painted ball), 0.1 m apart, at a random angle."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    angle = rng.uniform(0.0, np.pi)
    along = (h * np.cos(angle) + v * np.sin(angle)) / 0.1
    index = np.floor(along).astype(np.int64) % len(colours)
    image = np.asarray(colours, np.float32)[index]
    edge = np.minimum(along % 1.0, 1.0 - along % 1.0) * 0.1
    return _paint(image, _step(0.006 - edge, texel_m), [0.95, 0.95, 0.92])


def dots(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, base, colours,
         pitch: float = 0.09) -> np.ndarray:
    """A beach ball: six broad sectors around the face centre in ``base`` colours, strewn with polka dots of a few
    colours and sizes in a jittered lattice of ``pitch`` metres."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    sector = np.floor((np.arctan2(v - v.mean(), h - h.mean()) + np.pi) / (np.pi / 3.0)).astype(np.int64) % 6
    image = np.asarray(base, np.float32)[sector % len(base)]
    row, column = np.floor(v / pitch).astype(np.int64), np.floor(h / pitch).astype(np.int64)
    cells = (row.max() + 1, column.max() + 1)
    jitter = rng.uniform(-0.2, 0.2, size=(*cells, 2)) * pitch
    radius = rng.uniform(0.15, 0.32, size=cells)[row, column] * pitch
    colour = np.asarray(colours, np.float32)[rng.integers(0, len(colours), size=cells)[row, column]]
    off_v = v % pitch - 0.5 * pitch - jitter[row, column, 0]
    distance = np.hypot(off_v, h % pitch - 0.5 * pitch - jitter[row, column, 1])
    return _paint(image, _step(radius - distance, texel_m), colour)


def checker(shape: tuple[int, int], texel_m: float, rng: np.random.Generator, colours, size_m: float) -> np.ndarray:
    """Soft-edged two-colour checks of ``size_m`` metres."""
    rows, cols = shape
    v, h = _grid(rows, cols, texel_m)
    cv, ch = np.sin(np.pi * v / size_m), np.sin(np.pi * h / size_m)
    weight = _step(cv * ch * size_m / np.pi, texel_m)
    return _paint(np.broadcast_to(np.float32(colours[0]), (rows, cols, 3)), weight, colours[1])


def object_textures(material: str, half: tuple[float, float, float], texel_m: float,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Six face textures of an object of ``material`` (crate | stone | marble | stripes | dots | checker)."""
    shapes = [_face_shape(k, half, texel_m) for k in range(6)]
    if material == "crate":
        out = [_upright(k, half, texel_m, lambda s: crate(s, texel_m, rng)) if k < 4 else
               planks(shapes[k], texel_m, rng, width_m=0.1, colours=WOOD * np.float32(1.1)) for k in range(6)]
    elif material == "stone":
        out = [_upright(k, half, texel_m, lambda s: stone_blocks(s, texel_m, rng)) if k < 4 else
               stone_blocks(shapes[k], texel_m, rng) for k in range(6)]
    elif material == "marble":
        out = [marble(s, texel_m, rng, [0.82, 0.8, 0.76]) for s in shapes]
    elif material == "stripes":
        colours = [[0.85, 0.2, 0.15], [0.95, 0.8, 0.2], [0.15, 0.45, 0.8], [0.2, 0.65, 0.35]]
        out = [painted_stripes(s, texel_m, rng, colours) for s in shapes]
    elif material == "dots":
        sectors = [[0.9, 0.25, 0.2], [0.95, 0.92, 0.85], [0.2, 0.45, 0.85], [0.95, 0.8, 0.2], [0.25, 0.65, 0.35],
                   [0.95, 0.92, 0.85]]
        colours = [[0.95, 0.95, 0.92], [0.1, 0.1, 0.12], [0.55, 0.2, 0.5]]
        out = [dots(s, texel_m, rng, sectors, colours, pitch=0.11) for s in shapes]
    elif material == "checker":
        out = [checker(s, texel_m, rng, ([0.15, 0.2, 0.45], [0.9, 0.75, 0.35]), 0.1) for s in shapes]
    else:
        raise ValueError(f"unknown material {material!r}")
    return [np.clip(t, 0.03, 0.97).astype(np.float32) for t in out]
