"""Distances on the Earth: the one haversine of the project (the dock's distance column, the
evaluation's localisation errors and the tests all use it)."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # the IUGG mean radius


def haversine_m(lon1, lat1, lon2, lat2) -> float | np.ndarray:
    """Great-circle distance in metres between points given in degrees: arrays broadcast to an
    array; four scalars give a float."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, float)) for v in (lon1, lat1, lon2, lat2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    return float(d) if d.ndim == 0 else d
