"""Fixtures of the export tests: the signed distance of the built-in synthetic scene (its known geometry)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from nerfstage.capture.synthetic import scene_description


def _local(points: torch.Tensor, item: dict) -> torch.Tensor:
    """[n, 3] points in the frame of a primitive (centre at the origin, yaw about +z undone)."""
    yaw = math.radians(item["yaw_deg"])
    d = points - torch.tensor(item["center"], dtype=points.dtype)
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], dim=-1)


def _box(local: torch.Tensor, half) -> torch.Tensor:
    q = local.abs() - torch.tensor(half, dtype=local.dtype)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def _cylinder(local: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    q = torch.stack([local[:, :2].norm(dim=-1) - radius, local[:, 2].abs() - half_height], dim=-1)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def _object_sdf(points: torch.Tensor, item: dict) -> torch.Tensor:
    local = _local(points, item)
    if item["type"] == "sphere":
        return local.norm(dim=-1) - item["radius"]
    if item["type"] == "cylinder":
        return _cylinder(local, item["radius"], item["height"] / 2)
    return _box(local, item["half_extents"])


@pytest.fixture(scope="session")
def synthetic_sdf() -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """``sdf(points [n, 3] world metres, with_room) -> [n]`` signed distance (negative inside solid) to the
    synthetic scene's objects and, when ``with_room``, also to the room's walls, floor and ceiling."""
    scene = scene_description()

    def sdf(points: torch.Tensor, with_room: bool = False) -> torch.Tensor:
        distance = torch.stack([_object_sdf(points, item) for item in scene["objects"]]).min(dim=0).values
        if with_room:
            distance = torch.minimum(distance, -_box(_local(points, scene["room"]), scene["room"]["half_extents"]))
        return distance

    return sdf
