"""Drone cameras for a world: the engine's camera model (`geobridge_qgis.core.camera`),
drawn at random so that a whole photo lies on the world, and the ranges the demo photos and
the training views are drawn from."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from geobridge_qgis.core.camera import Camera

from ..world import World

PHOTO_SIZE = (640, 480)
# Drone cameras of the demo photos and of training: footprints of about 70-240 m across, the
# scale of the engine's 100 m and 150 m chips (GeoLoc's satellite crops are 80-180 m).
DRONE_ALTITUDE_M = (60.0, 150.0)
DRONE_TILT_DEG = (0.0, 35.0)
DRONE_HFOV_DEG = (60.0, 75.0)


def random_camera(
    world: World,
    rng: np.random.Generator,
    size: tuple[int, int] = (640, 480),
    altitude: tuple[float, float] = (60.0, 200.0),
    tilt: tuple[float, float] = (0.0, 35.0),
    hfov: tuple[float, float] = (60.0, 84.0),
    margin: float = 0.0,
) -> Camera:
    """A camera drawn from rng whose whole footprint lies inside the world (less `margin`)."""
    xmin, ymin, xmax, ymax = world.bounds
    for _ in range(100):
        cam = Camera(
            0.0,
            0.0,
            float(rng.uniform(*altitude)),
            float(rng.uniform(0.0, 360.0)),
            float(rng.uniform(*tilt)),
            float(rng.uniform(*hfov)),
        )
        fp = cam.footprint(size)
        lo_x, hi_x = xmin + margin - fp[:, 0].min(), xmax - margin - fp[:, 0].max()
        lo_y, hi_y = ymin + margin - fp[:, 1].min(), ymax - margin - fp[:, 1].max()
        if lo_x < hi_x and lo_y < hi_y:
            return replace(cam, x=float(rng.uniform(lo_x, hi_x)), y=float(rng.uniform(lo_y, hi_y)))
        altitude = (altitude[0], max(altitude[0], 0.8 * altitude[1]))
    raise ValueError(f"world {world.size_m} m is too small for these cameras")


def oblique_camera(
    world: World,
    rng: np.random.Generator,
    size: tuple[int, int],
    altitude: tuple[float, float],
    tilt: tuple[float, float],
    hfov: tuple[float, float],
    far_m: float,
) -> Camera:
    """A camera of any tilt up to near the horizon whose view centre is seen well: the tilt is
    drawn first, then an altitude that keeps the view centre within half of far_m (lower the
    more oblique: 85 degrees off nadir needs a low drone), then a heading and a position such
    that the ground up to twice the view centre's distance lies inside the world."""
    from .drone import visible_footprint

    xmin, ymin, xmax, ymax = world.bounds
    for _ in range(200):
        t = float(rng.uniform(*tilt))
        top = min(altitude[1], 0.5 * far_m / max(math.tan(math.radians(t)), 1e-9))
        if top < altitude[0]:
            t = math.degrees(math.atan(0.5 * far_m / altitude[0]))
            top = altitude[0]
        cam = Camera(0.0, 0.0, float(rng.uniform(altitude[0], top)),
                     float(rng.uniform(0.0, 360.0)), t, float(rng.uniform(*hfov)))  # fmt: skip
        reach = min(far_m, 2 * math.hypot(*cam.centre_ground()) + 60.0)
        fp = visible_footprint(cam, size, reach)
        lo_x, hi_x = xmin - fp[:, 0].min(), xmax - fp[:, 0].max()
        lo_y, hi_y = ymin - fp[:, 1].min(), ymax - fp[:, 1].max()
        if lo_x < hi_x and lo_y < hi_y:
            return replace(cam, x=float(rng.uniform(lo_x, hi_x)), y=float(rng.uniform(lo_y, hi_y)))
    raise ValueError(f"world {world.size_m} m is too small for these cameras")
