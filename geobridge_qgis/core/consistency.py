"""Consistency gates: does an accepted image match agree with the photo's own metadata?

A match that disagrees is a **conflict**: kept as a candidate, flagged with both positions and
the reason, never taken silently as the answer. Three gates, each against the error model the
prior was built with (`posterior.SIGMAS`):

- **position**: the match's centre outside the prior's 3-sigma region;
- **heading**: the match's heading more than 3 sigma (the yaw's and the match's own, combined)
  plus HEADING_SLACK_DEG from the metadata's yaw;
- **scale**: the matched footprint's area (the frame's usable ground part, as the refiner
  reports it) outside what the camera model predicts for the altitude and pitch anywhere
  within 3 sigma, widened by SCALE_SLACK (the matched quadrilateral
  is itself measured from a few dozen inliers).
"""

from __future__ import annotations

import math

import numpy as np
from pyproj import Transformer

from .camera import Camera
from .photo_view import ground_part
from .posterior import MetadataPrior

HEADING_SLACK_DEG = 3.0
SCALE_SLACK = 1.25  # linear


def ring_area(ring) -> float:
    """The area of a polygon ring (shoelace), in the square of its units."""
    p = np.asarray(ring, float)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _predicted_areas(prior: MetadataPrior) -> tuple[float, float] | None:
    """(smallest, largest) area of the footprint the refiner reports (the frame's ground part,
    `photo_view.ground_part`, its rows fixed by the metadata's pitch) within 3 sigma of
    altitude and pitch (None: the metadata has no full attitude)."""
    nominal = prior.camera()
    if nominal is None or not all(prior.image_size):
        return None
    rows = ground_part(nominal, prior.image_size)
    areas = []
    for da in (-3, 3):
        for dt in (-3, 0, 3):
            alt = prior.altitude_m + da * prior.altitude_sigma_m
            tilt = prior.tilt_deg + dt * prior.pitch_sigma_deg
            if alt <= 1 or tilt < 0:
                continue
            cam = Camera(0.0, 0.0, alt, 0.0, tilt, prior.hfov_deg or 73.7)
            top = math.degrees(math.atan(
                (prior.image_size[1] / 2 - 0.5 - rows[0, 1]) / cam.focal_px(prior.image_size)
            ))  # fmt: skip
            if tilt + top >= 88:
                continue  # this attitude puts the part's top row at the horizon: no bound
            areas.append(ring_area(cam.ground_points(rows, prior.image_size)))
    return (min(areas), max(areas)) if areas else None


def conflict(prior: MetadataPrior, match, crs) -> str | None:
    """Why an accepted match disagrees with the metadata (None: it agrees)."""
    why = []
    if not prior.inside(match.x, match.y, 3.0):
        d = math.hypot(match.x - prior.x, match.y - prior.y)
        to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
        mlon, mlat = to_ll.transform(match.x, match.y)
        region = "wedge" if prior.wedge is not None else f"3 sigma {3 * prior.sigma_m:.0f} m"
        why.append(
            f"centre {d:.0f} m from the metadata's predicted centre, outside its {region} "
            f"(match {mlon:.6f}, {mlat:.6f}; metadata {prior.lon:.6f}, {prior.lat:.6f})"
        )
    if prior.yaw_deg is not None and math.isfinite(match.heading_deg):
        off = (match.heading_deg - prior.yaw_deg + 180.0) % 360.0 - 180.0
        own = match.heading_sigma_deg if math.isfinite(match.heading_sigma_deg) else 0.0
        limit = 3 * math.hypot(prior.yaw_sigma_deg, own) + HEADING_SLACK_DEG
        if abs(off) > limit:
            yaw = prior.yaw_deg % 360
            why.append(f"heading {match.heading_deg:.0f} deg vs the metadata's yaw {yaw:.0f} "
                       f"deg ({off:+.0f}, limit {limit:.0f})")  # fmt: skip
    areas = _predicted_areas(prior)
    if areas is not None and len(match.footprint) >= 4:
        got = ring_area(match.footprint[:4])
        lo, hi = areas[0] / SCALE_SLACK**2, areas[1] * SCALE_SLACK**2
        if not lo <= got <= hi:
            scale = math.sqrt(got / math.sqrt(areas[0] * areas[1]))
            why.append(f"footprint scale x{scale:.2f} of what the altitude "
                       f"{prior.altitude_m:.0f} m predicts")  # fmt: skip
    return "; ".join(why) or None
