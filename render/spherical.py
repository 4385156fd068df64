"""360-degree video metadata for equirectangular MP4s (Google Spherical Video V1, RFC-style XML in a ``uuid`` box).

FFmpeg's MP4 muxer writes the newer V2 ``sv3d``/``st3d`` boxes only from ``AV_PKT_DATA_SPHERICAL`` stream side
data, which PyAV cannot attach to an output stream; so, like Google's spatial-media injector, we add the V1
``uuid`` box (``ffcc8263-f855-4a93-8814-587a02521fdd``) with its GSpherical XML to the video ``trak`` after
muxing. YouTube, VLC and most 360 players read V1. The box is appended to the ``trak`` inside ``moov``; FFmpeg
puts ``moov`` after ``mdat`` (no faststart), so no sample offsets move.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..core.errors import NerfstageError

SPHERICAL_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")
SPHERICAL_XML = (
    '<?xml version="1.0"?><rdf:SphericalVideo\n'
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"\n'
    'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/">'
    "<GSpherical:Spherical>true</GSpherical:Spherical>"
    "<GSpherical:Stitched>true</GSpherical:Stitched>"
    "<GSpherical:StitchingSoftware>nerfstage</GSpherical:StitchingSoftware>"
    "<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType>"
    "</rdf:SphericalVideo>"
)


def iter_boxes(data: bytes, start: int, end: int):
    """Yield (type, box start, header size, box end) of the MP4 boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise NerfstageError(f"damaged MP4 box {kind!r} at byte {pos}")
        yield kind.decode("latin-1"), pos, header, pos + size
        pos += size


def _video_trak(data: bytes, moov: tuple) -> tuple | None:
    _, start, header, end = moov
    for box in iter_boxes(data, start + header, end):
        if box[0] != "trak":
            continue
        for mdia in (b for b in iter_boxes(data, box[1] + box[2], box[3]) if b[0] == "mdia"):
            for hdlr in (b for b in iter_boxes(data, mdia[1] + mdia[2], mdia[3]) if b[0] == "hdlr"):
                body = hdlr[1] + hdlr[2]
                if data[body + 8 : body + 12] == b"vide":  # version/flags, pre_defined, handler_type
                    return box
    return None


def add_spherical_metadata(path: Path) -> None:
    """Mark an MP4 (moov after mdat, as FFmpeg writes it) as equirectangular 360 video, in place."""
    path = Path(path)
    data = path.read_bytes()
    top = list(iter_boxes(data, 0, len(data)))
    kinds = [box[0] for box in top]
    if "moov" not in kinds or "mdat" not in kinds or kinds.index("moov") < kinds.index("mdat"):
        raise NerfstageError(f"{path}: expected an MP4 with its moov box after mdat to add spherical metadata")
    moov = top[kinds.index("moov")]
    trak = _video_trak(data, moov)
    if trak is None:
        raise NerfstageError(f"{path}: no video track found to mark as spherical")
    payload = SPHERICAL_XML.encode("utf-8")
    box = struct.pack(">I4s", 8 + 16 + len(payload), b"uuid") + SPHERICAL_UUID + payload
    out = bytearray(data[: trak[3]] + box + data[trak[3] :])
    for _, start, header, end in (moov, trak):  # grow the enclosing boxes
        if header == 16:
            struct.pack_into(">Q", out, start + 8, end - start + len(box))
        else:
            struct.pack_into(">I", out, start, end - start + len(box))
    path.write_bytes(bytes(out))


def read_spherical_metadata(path: Path) -> str | None:
    """The Spherical Video V1 XML of an MP4's video track, or None."""
    data = Path(path).read_bytes()
    moov = next((b for b in iter_boxes(data, 0, len(data)) if b[0] == "moov"), None)
    trak = _video_trak(data, moov) if moov else None
    if trak is None:
        return None
    for kind, start, header, end in iter_boxes(data, trak[1] + trak[2], trak[3]):
        if kind == "uuid" and data[start + header : start + header + 16] == SPHERICAL_UUID:
            return data[start + header + 16 : end].decode("utf-8")
    return None
