"""What a photo's own metadata says about where to search: GPS, altitude, heading.

Three priors, each one the analyst can turn off (metadata can be spoofed or wrong):

- **GPS** limits the search to a circle. EXIF GPS is the *drone's* position, not the centre of
  what it saw: an oblique camera looks `altitude * tan(tilt)` metres ahead. With the heading
  prior on and the gimbal pitch known, the circle is moved there; otherwise it is widened to
  cover any view up to 45 degrees off nadir. Radius = the GPS uncertainty (user-set, else the
  EXIF GPSHPositioningError, else DEFAULT_GPS_RADIUS_M) plus that look-ahead margin.
- **Altitude** (with the focal length; DEFAULT_FOCAL_35MM when the EXIF has none) gives the
  width of the ground the photo covers along its centre line; the search keeps the index's chip
  scale nearest to it (ratio in log space), and the matcher scales the photo to it. With the
  gimbal pitch as well, the matcher first warps the photo onto the ground (`camera.Camera`),
  north up when the heading prior is on too.
- **Heading** (XMP gimbal yaw, else flight yaw, else EXIF GPSImgDirection) picks the one
  rotation of 0/90/180/270 that turns the photo nearest north-up instead of trying all four.

A prior that cannot be applied (no tag, a GPS fix outside the index) is skipped and the reason
is kept in `notes`; `used` lists those that were applied: the result says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pyproj import CRS, Geod, Transformer

from . import defaults
from .camera import Camera, centre_width_m, hfov_from_35mm, look_ahead_m
from .photo import PhotoMeta

DEFAULT_GPS_RADIUS_M = defaults.GPS_RADIUS_M
DEFAULT_FOCAL_35MM = 24.0  # the usual wide lens of survey and consumer drones
MAX_TILT_DEG = 45.0  # look-ahead margin when the gimbal pitch is unknown
LOOK_AHEAD_ERROR = 0.15  # share of the look-ahead distance allowed for pitch/altitude error


@dataclass
class PriorOptions:
    gps: bool = True
    altitude: bool = True
    heading: bool = True
    gps_radius_m: float | None = None  # None: EXIF accuracy tag, else DEFAULT_GPS_RADIUS_M

    def as_dict(self) -> dict:
        return {"gps": self.gps, "altitude": self.altitude, "heading": self.heading,
                "gps_radius_m": self.gps_radius_m}  # fmt: skip


NO_PRIORS = PriorOptions(gps=False, altitude=False, heading=False)


@dataclass
class Priors:
    """The priors that apply to one photo."""

    centre_lonlat: tuple[float, float] | None = None  # where the footprint centre should be
    radius_m: float | None = None
    footprint_m: float | None = None  # expected ground width along the photo's centre line
    rotation: int | None = None  # degrees counter-clockwise that turn the photo north-up
    camera: Camera | None = None  # altitude prior with a gimbal pitch: undo the perspective
    used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def allowed_ids(self, ids, cx, cy, sizes, crs: CRS) -> np.ndarray | None:
        """The chips the priors leave (None: no restriction). A chip stays when its square can
        hold the expected centre (centre distance <= radius + half its diagonal) and, with the
        altitude prior, when it is of the chip scale nearest the expected footprint. A GPS
        circle that holds no chip is dropped here (from `used`, with a note), not applied."""
        keep = np.ones(len(ids), bool)
        restricted = False
        if "altitude" in self.used and self.footprint_m:
            scales = np.unique(sizes)
            best = scales[np.argmin(np.abs(np.log(scales / self.footprint_m)))]
            keep &= sizes == best
            restricted = True
        if "gps" in self.used and self.centre_lonlat is not None:
            x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(*self.centre_lonlat)
            reach = self.radius_m + sizes * math.sqrt(0.5)
            inside = (cx - x) ** 2 + (cy - y) ** 2 <= reach**2
            if not (keep & inside).any():
                self.used.remove("gps")
                self.notes.append("GPS prior ignored: the photo's position is outside the index")
            else:
                keep &= inside
                restricted = True
        return ids[keep] if restricted else None


def tilt_deg(meta: PhotoMeta) -> float | None:
    """Degrees off nadir from a DJI gimbal pitch (-90 = straight down)."""
    if meta.pitch_deg is None:
        return None
    return min(max(90.0 + meta.pitch_deg, 0.0), 80.0)


def hfov_deg(meta: PhotoMeta, width: int, height: int) -> float:
    """Horizontal field of view from the 35 mm equivalent focal length (by the diagonal)."""
    return hfov_from_35mm(meta.focal_35mm or DEFAULT_FOCAL_35MM, width, height)


def priors_for(
    meta: PhotoMeta | None, image_size: tuple[int, int], options: PriorOptions
) -> Priors:
    """The priors a photo's metadata allows under `options`; image_size is (width, height)."""
    p = Priors()
    if meta is None:
        return p
    # What the reader found doubtful (void GPS, a truncated file) reaches the analyst too.
    p.notes.extend(getattr(meta, "notes", None) or [])
    width, height = image_size
    tilt = tilt_deg(meta)
    if options.heading:
        if meta.heading_deg is None:
            p.notes.append("heading prior: the photo has no heading tag")
        else:
            p.rotation = round((-meta.heading_deg % 360) / 90.0) % 4 * 90
            p.used.append("heading")
    if options.altitude:
        if meta.altitude_m is None or meta.altitude_m <= 0:
            p.notes.append("altitude prior: the photo has no altitude above ground")
        else:
            hfov = hfov_deg(meta, width, height)
            p.footprint_m = centre_width_m(meta.altitude_m, tilt or 0.0, hfov)
            p.used.append("altitude")
            if tilt is not None:
                heading = meta.heading_deg if options.heading else None
                p.camera = Camera(0.0, 0.0, meta.altitude_m, heading, tilt, hfov)
    if options.gps:
        if meta.lon is None or meta.lat is None:
            p.notes.append("GPS prior: the photo has no GPS position")
        else:
            radius = options.gps_radius_m or meta.gps_accuracy_m or DEFAULT_GPS_RADIUS_M
            alt = meta.altitude_m if meta.altitude_m and meta.altitude_m > 0 else None
            lon, lat = meta.lon, meta.lat
            if alt is None:
                radius += 200.0  # no altitude: any low drone view
            elif options.heading and tilt is not None and meta.heading_deg is not None:
                ahead = look_ahead_m(alt, tilt)
                lon, lat, _ = Geod(ellps="WGS84").fwd(lon, lat, meta.heading_deg, ahead)
                radius += LOOK_AHEAD_ERROR * ahead + 5.0
            else:
                radius += alt * math.tan(math.radians(MAX_TILT_DEG))
            p.centre_lonlat, p.radius_m = (lon, lat), radius
            p.used.append("gps")
    return p
