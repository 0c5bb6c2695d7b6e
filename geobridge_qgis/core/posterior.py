"""Where the photo's own metadata puts it, and how sure that is: a prior density, not a circle.

The view centre the metadata predicts (flat ground): the GPS position plus the look-ahead
`d = h * tan(tilt)` along the yaw. Its uncertainty is propagated from the sensors' error model
(`SIGMAS`, one standard deviation each; the synthetic world's metadata follows the same model,
`synthworld.metadata_errors`), to first order, along and across the view:

    along  = sqrt(gps^2 + (h * sec^2(tilt) * pitch)^2 + (tan(tilt) * altitude)^2)
    across = sqrt(gps^2 + (d * yaw)^2)                    (angles in radians)

`altitude` is the relative altitude's error: barometer plus the take-off point's unknown height
above the photo's ground (DJI writes height above take-off). With less metadata the centre is
the GPS position and the unknown look-ahead becomes isotropic spread: direction unknown (no
yaw): d / sqrt(2) per axis; tilt unknown: h / 2 (any view up to 45 degrees); no altitude:
GPS_ONLY_SPREAD_M. Near the horizon the look-ahead runs to infinity: when the view centre at
tilt + 2 sigma lies beyond MAX_RANGE_M the prior is a **wedge** along the yaw, from the
distance at tilt - 2 sigma to MAX_RANGE_M (or twice that near distance when it is already
farther), 3 sigma of yaw wide; its point is the optical axis'
ground point when within range, else the wedge's middle.

`sigma_m` (one number for a candidate) is the per-axis RMS sqrt((along^2 + across^2) / 2).
The 3-sigma region (Mahalanobis distance <= 3, or inside the wedge widened by 3 sigma of GPS)
is what the consistency gates (`consistency.py`) test a match against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from .camera import Camera, centre_width_m, look_ahead_m
from .photo import PhotoMeta
from .priors import PriorOptions, hfov_deg


@dataclass(frozen=True)
class Sigmas:
    """One standard deviation of each metadata error a consumer drone makes."""

    # horizontal, per axis: a consumer receiver's 2-4 m plus the basemap's own registration
    # against GNSS (satellite mosaics are commonly a few metres off); jumps come on top
    gps_m: float = 5.0
    gps_jump_rate: float = 0.05  # multipath jumps: a share of photos, not Gaussian
    gps_jump_m: tuple[float, float] = (20.0, 60.0)
    # gimbal yaw: compass near steel, gimbal against body (real files differ by up to 16 deg)
    yaw_deg: float = 10.0
    pitch_deg: float = 1.0  # gimbal pitch
    baro_m: float = 1.0  # relative (barometric) altitude
    takeoff_dz_m: float = 5.0  # the take-off point's ground above the photo's ground

    def altitude_m(self, ref: str | None) -> float:
        """The height error: above take-off adds the unknown terrain step."""
        if ref == "ground":
            return self.baro_m
        return math.hypot(self.baro_m, self.takeoff_dz_m)


SIGMAS = Sigmas()
GPS_ONLY_SPREAD_M = 50.0  # no altitude: a low drone's view centre, anywhere within ~100 m
MAX_RANGE_M = 1000.0  # a near-horizon prior reaches this far, not to infinity
MAX_WINDOW_M = 800.0  # the widest imagery window matched around the prior


@dataclass
class MetadataPrior:
    """The metadata's predicted view centre (grid CRS and WGS 84) and its uncertainty."""

    x: float
    y: float
    lon: float
    lat: float
    sigma_along_m: float
    sigma_across_m: float
    bearing_deg: float | None  # the along axis (the yaw); None: isotropic
    camera_x: float  # the GPS position, grid CRS
    camera_y: float
    level: str  # "gps" (position only, or partial) or "full"
    yaw_deg: float | None = None
    yaw_sigma_deg: float = SIGMAS.yaw_deg
    tilt_deg: float | None = None
    pitch_sigma_deg: float = SIGMAS.pitch_deg
    altitude_m: float | None = None
    altitude_sigma_m: float = 0.0
    hfov_deg: float | None = None
    image_size: tuple[int, int] = (0, 0)
    gps_sigma_m: float = SIGMAS.gps_m
    wedge: tuple[float, float] | None = None  # (near, far) distance from the camera

    @property
    def sigma_m(self) -> float:
        return math.sqrt((self.sigma_along_m**2 + self.sigma_across_m**2) / 2)

    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        b = math.radians(self.bearing_deg or 0.0)
        return np.array([math.sin(b), math.cos(b)]), np.array([math.cos(b), -math.sin(b)])

    def mahalanobis(self, x: float, y: float) -> float:
        """Distance of (x, y) from the centre in sigmas (the wedge: 0 inside, else the
        shortfall in sigmas of GPS beyond its 3-sigma edge, plus 3)."""
        if self.wedge is not None:
            return 0.0 if self.in_wedge(x, y, 3.0) else float("inf")
        along, across = self._axes()
        d = np.array([x - self.x, y - self.y])
        return float(math.hypot(d @ along / self.sigma_along_m, d @ across / self.sigma_across_m))

    def in_wedge(self, x: float, y: float, k: float) -> bool:
        near, far = self.wedge
        dx, dy = x - self.camera_x, y - self.camera_y
        r = math.hypot(dx, dy)
        slack = k * self.gps_sigma_m
        if not near - slack <= r <= far + slack:
            return False
        off = abs((math.degrees(math.atan2(dx, dy)) - self.yaw_deg + 180) % 360 - 180)
        return off <= k * self.yaw_sigma_deg + math.degrees(math.atan2(slack, max(r, 1.0)))

    def inside(self, x: float, y: float, k: float = 3.0) -> bool:
        if self.wedge is not None:
            return self.in_wedge(x, y, k)
        return self.mahalanobis(x, y) <= k

    def p_within(self, radius_m: float) -> float:
        """The prior's own probability that the truth lies within radius_m of its point: the
        Gaussian (the wedge: the share of its length within reach) for all but the share of
        GNSS jumps, which land within reach as often as their length allows. Below 1 while a
        jump can land beyond radius_m: a drone's metadata is sometimes wrong by more than its
        noise."""
        if self.wedge is not None:
            near, far = self.wedge
            p = min(1.0, 2 * radius_m / max(far - near, 1e-6))
        else:
            p = 1.0 - math.exp(-(radius_m**2) / (2 * self.sigma_along_m * self.sigma_across_m))
        lo, hi = SIGMAS.gps_jump_m
        jumped = min(max((radius_m - lo) / max(hi - lo, 1e-6), 0.0), 1.0)
        q = SIGMAS.gps_jump_rate
        return float((1 - q) * p + q * min(p, jumped))

    def window_m(self, footprint_m: float) -> float:
        """The side of an imagery window that holds the footprint wherever the centre lies
        within 3 sigma."""
        reach = 3 * max(self.sigma_along_m, self.sigma_across_m)
        if self.wedge is not None:
            reach = (self.wedge[1] - self.wedge[0]) / 2
        return float(min(MAX_WINDOW_M, footprint_m + 2 * reach))

    def ellipse(self, k: float = 1.0, n: int = 32) -> list[tuple[float, float]]:
        """The k-sigma boundary as a ring in the grid CRS (the wedge: its outline)."""
        if self.wedge is not None:
            near, far = self.wedge
            half = 3 * self.yaw_sigma_deg
            angles = np.linspace(self.yaw_deg - half, self.yaw_deg + half, n // 2)
            pts = [(near, a) for a in angles] + [(far, a) for a in angles[::-1]]
            ring = [(self.camera_x + r * math.sin(math.radians(a)),
                     self.camera_y + r * math.cos(math.radians(a))) for r, a in pts]  # fmt: skip
        else:
            along, across = self._axes()
            t = np.linspace(0, 2 * math.pi, n, endpoint=False)
            p = (np.outer(np.cos(t) * k * self.sigma_along_m, along)
                 + np.outer(np.sin(t) * k * self.sigma_across_m, across))  # fmt: skip
            ring = [(self.x + a, self.y + b) for a, b in p]
        return [*ring, ring[0]]

    def camera(self) -> Camera | None:
        """The camera the metadata describes, at the GPS position (None without attitude)."""
        if self.level != "full" or self.altitude_m is None or self.tilt_deg is None:
            return None
        return Camera(self.camera_x, self.camera_y, self.altitude_m, self.yaw_deg,
                      self.tilt_deg, self.hfov_deg or 73.7)  # fmt: skip

    def as_dict(self) -> dict:
        wedge = None if self.wedge is None else [round(v, 1) for v in self.wedge]
        return {"lon": round(self.lon, 7), "lat": round(self.lat, 7),
                "sigma_m": round(self.sigma_m, 2), "sigma_along_m": round(self.sigma_along_m, 2),
                "sigma_across_m": round(self.sigma_across_m, 2), "level": self.level,
                "wedge_m": wedge}  # fmt: skip


def metadata_prior(
    meta: PhotoMeta | None,
    image_size: tuple[int, int],
    options: PriorOptions,
    crs,
    sigmas: Sigmas = SIGMAS,
) -> MetadataPrior | None:
    """The prior a photo's metadata gives (None: no GPS position, or the GPS prior is off).
    The altitude and heading options turn those parts off as they do for the search priors."""
    if meta is None or not options.gps or meta.lon is None or meta.lat is None:
        return None
    gps = (
        options.gps_radius_m / 2 if options.gps_radius_m else (meta.gps_accuracy_m or sigmas.gps_m)
    )
    cx, cy = Transformer.from_crs(4326, crs, always_xy=True).transform(meta.lon, meta.lat)
    alt = meta.altitude_m if options.altitude and meta.altitude_m and meta.altitude_m > 0 else None
    tilt = None if meta.pitch_deg is None else min(max(90.0 + meta.pitch_deg, 0.0), 90.0)
    yaw = meta.heading_deg if options.heading else None
    w, h = image_size
    hfov = hfov_deg(meta, w, h) if w and h else hfov_deg(meta, 4, 3)
    p = MetadataPrior(cx, cy, 0.0, 0.0, gps, gps, None, cx, cy, "gps", yaw, sigmas.yaw_deg,
                      tilt, sigmas.pitch_deg, alt, 0.0, hfov, (w, h), gps)  # fmt: skip
    if alt is None:
        p.sigma_along_m = p.sigma_across_m = math.hypot(gps, GPS_ONLY_SPREAD_M)
    elif tilt is None:
        p.sigma_along_m = p.sigma_across_m = math.hypot(gps, alt / 2)
    else:
        p.altitude_sigma_m = sigmas.altitude_m(meta.altitude_ref)
        t_hi = tilt + 2 * sigmas.pitch_deg
        if t_hi >= 89.5 or look_ahead_m(alt, t_hi) > MAX_RANGE_M:
            near = look_ahead_m(alt, max(tilt - 2 * sigmas.pitch_deg, 0.0))
            far = max(MAX_RANGE_M, 2 * near)  # beyond MAX_RANGE_M only when all of it is
            d = look_ahead_m(alt, tilt) if tilt < 89.5 else math.inf
            d = d if d < far else (near + far) / 2
            p.wedge = (near, far)
            along = (far - near) / math.sqrt(12)  # uniform along the wedge
            across = d * math.radians(sigmas.yaw_deg)
        else:
            d = look_ahead_m(alt, tilt)
            t = math.radians(tilt)
            along = math.hypot(alt / math.cos(t) ** 2 * math.radians(sigmas.pitch_deg),
                               math.tan(t) * p.altitude_sigma_m)  # fmt: skip
            across = d * math.radians(sigmas.yaw_deg)
        if yaw is None:
            spread = math.hypot(d / math.sqrt(2), along)
            p.sigma_along_m = p.sigma_across_m = math.hypot(gps, spread)
            p.wedge = None
        else:
            b = math.radians(yaw)
            p.x, p.y = cx + d * math.sin(b), cy + d * math.cos(b)
            p.sigma_along_m, p.sigma_across_m = math.hypot(gps, along), math.hypot(gps, across)
            p.bearing_deg = yaw
            p.level = "full"
    p.lon, p.lat = (float(v) for v in Transformer.from_crs(crs, 4326, always_xy=True)
                    .transform(p.x, p.y))  # fmt: skip
    return p


def expected_footprint_m(prior: MetadataPrior) -> float | None:
    """The ground width along the photo's centre line the metadata predicts (None: no
    altitude); at most MAX_WINDOW_M / 2 near the horizon."""
    if prior.altitude_m is None:
        return None
    tilt = min(prior.tilt_deg or 0.0, 80.0)
    hfov = prior.hfov_deg or 73.7
    return min(centre_width_m(prior.altitude_m, tilt, hfov), MAX_WINDOW_M / 2)
