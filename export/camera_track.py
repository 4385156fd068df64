"""The animated pinhole camera every interchange format stores (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CameraTrack:
    """An animated pinhole camera in the dataset frame: what every interchange format stores."""

    world_from_cams: np.ndarray
    """[F, 4, 4] camera-to-world per frame, OpenGL camera axes, dataset frame (+Z up), dataset units."""
    fov_y_deg: np.ndarray
    """[F] vertical field of view per frame, degrees."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    fps: float
    """Frames per second."""
    start_frame: int = 1
    """Frame number of the first frame."""
    meters_per_unit: float = 1.0
    """Metres per unit of the positions."""
    sensor_width_mm: float = 36.0
    """Film back width, mm (height = width * height / width pixels)."""
    name: str = "camera"
    """Camera name."""

    def __len__(self) -> int:
        return len(self.world_from_cams)

    @property
    def frames(self) -> np.ndarray:  # [F] int
        return self.start_frame + np.arange(len(self))

    @property
    def sensor_height_mm(self) -> float:
        return self.sensor_width_mm * self.height / self.width

    def focal_mm(self) -> np.ndarray:  # [F]
        """Focal length per frame, mm, on the film back (vertical fov over the sensor height)."""
        return 0.5 * self.sensor_height_mm / np.tan(np.radians(self.fov_y_deg) / 2.0)
