"""How wrong a drone's metadata is: the error model the synthetic photos' EXIF/XMP follow.

Every part is a field of `MetadataErrors` (and a `synth` flag); the defaults are what a
consumer drone gives, and the same sigmas are what the engine assumes
(`geobridge_qgis.core.posterior.SIGMAS`), so a prior built from these files is honest:

- **GNSS horizontal**: the position written is the drone's true position plus a Gaussian error
  of `gps_sigma_m` per axis; with probability `gps_jump_rate` a multipath jump is added, of
  `gps_jump_m` metres (uniform in that range) in a random direction. The GPS altitude (above
  sea level) is off by `gps_alt_sigma_m`.
- **Yaw**: the gimbal yaw written is the true heading plus N(0, `yaw_sigma_deg`) (compass and
  gimbal error); the flight (body) yaw differs from the true heading by N(0,
  `flight_yaw_sigma_deg`): gimbal and body point differently. `yaw_error_deg` fixes the gimbal
  error's size instead (random sign), for tables per yaw error.
- **Pitch**: the gimbal pitch written is off by N(0, `pitch_sigma_deg`).
- **Altitude**: written relative to the take-off point, as DJI does. The take-off point's
  ground lies `takeoff_dz` above the ground under the photo, drawn N(0, `takeoff_dz_sigma_m`);
  the barometer adds N(0, `baro_sigma_m`). So RelativeAltitude = height above the photo's
  ground - takeoff_dz + baro error.
- **Levels**: a share `share_none` of the photos carries no metadata at all, `share_gps_only`
  only the EXIF GPS position (and camera), the rest everything ("full").

Draws come from a generator of their own per photo (`[seed, 23, i]`), so the pixels and the
cameras of a world do not move when the error model changes. `Noise` records what was drawn:
`synth` writes it to truth.csv beside the truth, and the evaluation re-noises the photos of an
existing world with `noisy_meta` (seeded) without rewriting them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from geobridge_qgis.core.camera import Camera
from geobridge_qgis.core.photo import PhotoMeta
from geobridge_qgis.core.posterior import SIGMAS

LEVELS = ("none", "gps", "full")


@dataclass(frozen=True)
class MetadataErrors:
    """The error model (see the module docstring); all sigmas are one standard deviation."""

    gps_sigma_m: float = SIGMAS.gps_m
    gps_jump_rate: float = SIGMAS.gps_jump_rate
    gps_jump_m: tuple[float, float] = SIGMAS.gps_jump_m
    gps_alt_sigma_m: float = 5.0
    yaw_sigma_deg: float = SIGMAS.yaw_deg
    yaw_error_deg: float | None = None  # a fixed gimbal yaw error (random sign) instead
    flight_yaw_sigma_deg: float = 10.0
    pitch_sigma_deg: float = SIGMAS.pitch_deg
    baro_sigma_m: float = SIGMAS.baro_m
    takeoff_dz_sigma_m: float = SIGMAS.takeoff_dz_m
    share_none: float = 0.0
    share_gps_only: float = 0.0

    @classmethod
    def exact(cls) -> MetadataErrors:
        """Metadata that tells the truth (every photo full)."""
        zero = {f.name: 0.0 for f in fields(cls) if f.type == "float"}
        return cls(**zero, gps_jump_m=(0.0, 0.0))

    def with_level(self, level: str) -> MetadataErrors:
        """Every photo at one metadata level ("none", "gps" or "full")."""
        if level not in LEVELS:
            raise ValueError(f"metadata level {level!r}: use one of {', '.join(LEVELS)}")
        return replace(self, share_none=float(level == "none"),
                       share_gps_only=float(level == "gps"))  # fmt: skip

    def check(self) -> None:
        """ValueError naming the first setting out of range."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and (v < 0 or not math.isfinite(v)):
                raise ValueError(f"{f.name} = {v}: must be a finite number >= 0")
        if self.share_none + self.share_gps_only > 1.0 + 1e-9:
            raise ValueError("share_none + share_gps_only must be at most 1")
        if not 0 <= self.gps_jump_rate <= 1:
            raise ValueError(f"gps_jump_rate = {self.gps_jump_rate}: use 0 to 1")
        lo, hi = self.gps_jump_m
        if not 0 <= lo <= hi:
            raise ValueError(f"gps_jump_m = {self.gps_jump_m}: use 0 <= low <= high")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Noise:
    """What one photo's metadata got: its level and each error drawn."""

    level: str
    gps_dx_m: float = 0.0  # east
    gps_dy_m: float = 0.0  # north
    gps_jump: bool = False
    gps_alt_error_m: float = 0.0
    yaw_error_deg: float = 0.0  # written gimbal yaw - true heading
    flight_yaw_error_deg: float = 0.0  # written flight yaw - true heading
    pitch_error_deg: float = 0.0  # written gimbal pitch - true pitch
    baro_error_m: float = 0.0
    takeoff_dz_m: float = 0.0  # take-off ground above the photo's ground

    @property
    def gps_error_m(self) -> float:
        return math.hypot(self.gps_dx_m, self.gps_dy_m)

    @property
    def rel_alt_error_m(self) -> float:
        """Written relative altitude - true height above the photo's ground."""
        return self.baro_error_m - self.takeoff_dz_m


def draw(errors: MetadataErrors, rng: np.random.Generator) -> Noise:
    """One photo's metadata errors. Always the same number of draws, whatever the level, so
    one photo's errors do not depend on another's level."""
    u_level = rng.uniform()
    dx, dy = rng.normal(0.0, 1.0, 2) * errors.gps_sigma_m
    jump = rng.uniform() < errors.gps_jump_rate
    jump_m, jump_dir = rng.uniform(*errors.gps_jump_m), rng.uniform(0.0, 2 * math.pi)
    if jump:
        dx, dy = dx + jump_m * math.sin(jump_dir), dy + jump_m * math.cos(jump_dir)
    yaw = rng.normal(0.0, errors.yaw_sigma_deg)
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    if errors.yaw_error_deg is not None:
        yaw = sign * errors.yaw_error_deg
    flight = rng.normal(0.0, errors.flight_yaw_sigma_deg)
    pitch = rng.normal(0.0, errors.pitch_sigma_deg)
    baro = rng.normal(0.0, errors.baro_sigma_m)
    dz = rng.normal(0.0, errors.takeoff_dz_sigma_m)
    gps_alt = rng.normal(0.0, errors.gps_alt_sigma_m)
    if u_level < errors.share_none:
        level = "none"
    elif u_level < errors.share_none + errors.share_gps_only:
        level = "gps"
    else:
        level = "full"
    return Noise(level, float(dx), float(dy), bool(jump), float(gps_alt), float(yaw),
                 float(flight), float(pitch), float(baro), float(dz))  # fmt: skip


def photo_rng(seed: int, i: int) -> np.random.Generator:
    """The generator of photo i's metadata errors in a world (or an evaluation) of `seed`."""
    return np.random.default_rng([seed, 23, i])


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def written_values(cam: Camera, noise: Noise, ground_elevation_m: float) -> dict:
    """The values a drone with these errors writes, in the camera's CRS and DJI conventions:
    gx, gy (the position written), gps_alt (above sea level), rel_alt (above take-off),
    yaw and flight_yaw (-180..180), pitch (gimbal, -90 = nadir)."""
    return {
        "gx": cam.x + noise.gps_dx_m,
        "gy": cam.y + noise.gps_dy_m,
        "gps_alt": ground_elevation_m + cam.altitude_m + noise.gps_alt_error_m,
        "rel_alt": cam.altitude_m + noise.rel_alt_error_m,
        "yaw": _wrap(cam.heading_deg + noise.yaw_error_deg),
        "flight_yaw": _wrap(cam.heading_deg + noise.flight_yaw_error_deg),
        "pitch": max(-90.0, min(0.0, cam.tilt_deg - 90.0 + noise.pitch_error_deg)),
    }


def noisy_meta(
    cam: Camera, noise: Noise, to_lonlat, focal_35mm: float | None, make: str = "GeoBridgeSynth"
) -> PhotoMeta | None:
    """The PhotoMeta the engine's reader would read from a file written with these errors
    (tested against the file route); None at level "none". `to_lonlat(x, y)` maps the
    camera's CRS to WGS 84."""
    if noise.level == "none":
        return None
    v = written_values(cam, noise, 0.0)
    lon, lat = (float(c) for c in to_lonlat(v["gx"], v["gy"]))
    meta = PhotoMeta(lon=lon, lat=lat, focal_35mm=focal_35mm, make=make)
    meta.sources["position"] = "EXIF GPS"
    if noise.level == "full":
        meta.altitude_m, meta.altitude_ref = v["rel_alt"], "take-off"
        meta.gimbal_yaw_deg, meta.flight_yaw_deg = v["yaw"], v["flight_yaw"]
        meta.heading_deg = v["yaw"] % 360
        meta.pitch_deg = v["pitch"]
    return meta


def truth_columns(noise: Noise) -> dict[str, str]:
    """The columns truth.csv gets for what the metadata got wrong."""
    return {
        "meta_level": noise.level,
        "gps_error_m": f"{noise.gps_error_m:.2f}",
        "gps_jump": str(int(noise.gps_jump)),
        "yaw_error_deg": f"{noise.yaw_error_deg:.2f}",
        "flight_yaw_error_deg": f"{noise.flight_yaw_error_deg:.2f}",
        "pitch_error_deg": f"{noise.pitch_error_deg:.2f}",
        "rel_alt_error_m": f"{noise.rel_alt_error_m:.2f}",
        "takeoff_dz_m": f"{noise.takeoff_dz_m:.2f}",
    }
