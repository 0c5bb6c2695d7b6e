"""How a synthetic world looks: palettes, season, sun, and the photographic finish.

A `Style` bundles palette, season, sun (azimuth clockwise from north towards the sun, elevation;
they set building and tree shadows), colour jitter, haze, blur and sensor noise;
`apply_finish` gives a rendered image its colour balance, haze, blur and noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..world import Field

_BASE = {
    "grass_a": (104, 134, 64),
    "grass_b": (132, 142, 80),
    "lawn": (98, 144, 66),
    "meadow": (122, 140, 74),
    "paved": (150, 147, 140),
    "yard": (140, 133, 118),
    "plaza": (176, 164, 146),
    "gravel": (170, 158, 134),
    "asphalt": (92, 93, 96),
    "asphalt_edge": (66, 67, 70),
    "track": (162, 148, 122),
    "path": (188, 176, 150),
    "marking": (236, 236, 230),
    "water": (46, 74, 84),
    "water_deep": (30, 52, 66),
    "reeds": (98, 110, 66),
    "bank": (110, 108, 78),
    "forest_floor": (40, 56, 32),
    "crown_deciduous": (62, 98, 46),
    "crown_conifer": (36, 62, 40),
    "hedge": (56, 88, 42),
    "roof_red": (170, 78, 58),
    "roof_brown": (124, 84, 64),
    "roof_grey": (134, 134, 136),
    "roof_dark": (68, 68, 74),
    "roof_white": (210, 210, 206),
    "wall": (214, 204, 188),
    "trunk": (82, 64, 48),
    "pitch": (84, 140, 60),
    "court_surround": (112, 120, 104),
    "clay": (186, 100, 68),
    "hard-green": (64, 124, 84),
    "hard-blue": (54, 94, 146),
    "net": (40, 40, 40),
}
CAR_RGB = {
    "white": (226, 226, 224),
    "black": (30, 30, 34),
    "grey": (108, 110, 114),
    "silver": (176, 178, 182),
    "blue": (44, 72, 152),
    "red": (172, 34, 32),
    "darkblue": (32, 42, 82),
    "green": (42, 92, 52),
    "beige": (200, 186, 150),
}
# Crop colour and stripe strength by season (the satellite is summer).
_CROPS = {
    "wheat": {
        "spring": ((96, 142, 60), 0.10),
        "summer": ((206, 182, 112), 0.08),
        "autumn": ((178, 162, 122), 0.10),
    },
    "barley": {
        "spring": ((112, 150, 70), 0.10),
        "summer": ((214, 196, 134), 0.08),
        "autumn": ((182, 166, 126), 0.10),
    },
    "maize": {
        "spring": ((132, 108, 82), 0.16),
        "summer": ((70, 120, 50), 0.10),
        "autumn": ((152, 136, 96), 0.14),
    },
    "rapeseed": {
        "spring": ((228, 210, 64), 0.06),
        "summer": ((122, 132, 72), 0.10),
        "autumn": ((82, 122, 60), 0.10),
    },
    "grassland": {
        "spring": ((102, 152, 70), 0.07),
        "summer": ((134, 152, 82), 0.09),
        "autumn": ((112, 136, 70), 0.07),
    },
    "potato": {
        "spring": ((138, 112, 86), 0.18),
        "summer": ((82, 126, 60), 0.14),
        "autumn": ((132, 106, 80), 0.16),
    },
    "sunflower": {
        "spring": ((132, 112, 86), 0.14),
        "summer": ((172, 152, 62), 0.10),
        "autumn": ((110, 92, 70), 0.12),
    },
    "ploughed": {
        "spring": ((128, 102, 76), 0.20),
        "summer": ((140, 114, 84), 0.18),
        "autumn": ((112, 90, 68), 0.22),
    },
}
_SEASON_VEG = {"spring": (1.04, 1.10, 0.92), "summer": (1.0, 1.0, 1.0), "autumn": (1.16, 1.0, 0.8)}
_VEG = ("grass_a", "grass_b", "lawn", "meadow", "reeds", "hedge", "pitch", "crown_deciduous")
_BUILT = ("paved", "yard", "plaza", "gravel", "asphalt", "asphalt_edge", "track", "path", "wall")


@dataclass(frozen=True)
class Style:
    """How a world looks: palette and season (colours), sun (shadows and shading), and the
    finish (colour jitter, haze, blur, sensor noise). Frozen and hashable; `seed` seeds the noise
    of renders that get no rng of their own."""

    name: str = "satellite"
    season: str = "summer"
    sun_azimuth_deg: float = 155.0  # towards the sun, clockwise from north
    sun_elevation_deg: float = 52.0
    veg_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    built_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # final, per channel
    brightness: float = 1.0
    saturation: float = 0.92
    gamma: float = 1.0
    haze: float = 0.07
    haze_colour: tuple[float, float, float] = (196, 204, 214)
    shadow: float = 0.5  # how much a shadow darkens (0..1)
    blur_px: float = 0.6
    noise_sigma: float = 3.0  # in 8-bit grey levels
    vignette: float = 0.0
    seed: int = 0

    @classmethod
    def satellite(cls, seed: int = 0) -> Style:
        """The satellite look: summer, late-morning sun from the south-east, a little haze,
        slight softness and sensor noise."""
        return cls(seed=int(seed))

    @classmethod
    def random_drone(cls, rng: np.random.Generator) -> Style:
        """A drone look drawn from rng: another season, sun, palette, colour balance and noise."""
        season = str(rng.choice(["spring", "summer", "autumn"], p=[0.35, 0.4, 0.25]))
        return cls(
            name="drone",
            season=season,
            sun_azimuth_deg=float(rng.uniform(90.0, 270.0)),
            sun_elevation_deg=float(rng.uniform(25.0, 65.0)),
            veg_gain=tuple(float(v) for v in rng.uniform(0.88, 1.12, 3)),
            built_gain=tuple(float(v) for v in rng.uniform(0.9, 1.1, 3)),
            gains=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)),
            brightness=float(rng.uniform(0.85, 1.15)),
            saturation=float(rng.uniform(0.85, 1.25)),
            gamma=float(rng.uniform(0.85, 1.15)),
            haze=float(rng.uniform(0.0, 0.08)),
            shadow=float(rng.uniform(0.35, 0.6)),
            blur_px=float(rng.uniform(0.0, 0.5)),
            noise_sigma=float(rng.uniform(1.5, 5.0)),
            vignette=float(rng.uniform(0.0, 0.25)),
            seed=int(rng.integers(2**31)),
        )

    # ---- colours

    def colour(self, key: str, tone: float = 0.5, spread: float = 0.16) -> np.ndarray:
        """RGB (float, 0..255) of a palette entry; `tone` 0..1 varies it by +-spread/2."""
        c = np.array(_BASE[key], dtype=np.float64)
        if key in _VEG:
            c = c * _SEASON_VEG[self.season] * self.veg_gain
        elif key in _BUILT or key.startswith("roof_"):
            c = c * self.built_gain
        return np.clip(c * (1.0 + spread * (tone - 0.5)), 0, 255)

    def crop(self, f: Field) -> tuple[np.ndarray, float]:
        rgb, amp = _CROPS[f.crop][self.season]
        c = np.array(rgb, dtype=np.float64) * self.veg_gain * (0.9 + 0.2 * f.tone)
        return np.clip(c, 0, 255), amp

    def crowns(self, conifer: np.ndarray, tone: np.ndarray) -> np.ndarray:
        """(n, 3) crown colours (conifers dark all year, broadleaves turn in autumn)."""
        conifer = np.asarray(conifer, bool)[:, None]
        t = np.asarray(tone, np.float64)[:, None]
        con = self.colour("crown_conifer")[None, :] * (1.0 + 0.3 * (t - 0.5))
        dec = self.colour("crown_deciduous")[None, :] * (1.0 + 0.3 * (t - 0.5))
        if self.season == "autumn":
            autumn = np.array([150.0, 108.0, 48.0]) * self.veg_gain
            dec = dec + (autumn - dec) * (0.25 + 0.5 * t)
        return np.clip(np.where(conifer, con, dec), 0, 255)

    def crown(self, conifer: bool, tone: float) -> np.ndarray:
        return self.crowns(np.array([conifer]), np.array([tone]))[0]

    @property
    def sun_vector(self) -> np.ndarray:
        """Unit vector towards the sun (east, north, up)."""
        az, el = math.radians(self.sun_azimuth_deg), math.radians(self.sun_elevation_deg)
        return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])

    def shadow_offset(self, height: float | np.ndarray) -> np.ndarray:
        """Ground displacement (dx, dy) of the shadow of a point `height` m up."""
        s = self.sun_vector
        k = np.asarray(height, dtype=np.float64) / max(s[2], 0.2)
        return np.stack([-s[0] * k, -s[1] * k], axis=-1)

    def shade(self, normal: np.ndarray) -> float:
        """Brightness factor of a surface with this unit normal (1 for flat ground)."""
        s = self.sun_vector
        lit = 0.45 + 0.75 * max(0.0, float(np.dot(normal, s)))
        return lit / (0.45 + 0.75 * s[2])


def position_tone(x: float, y: float) -> float:
    """A stable 0..1 value from a position (per-object colour variation without state)."""
    v = math.sin(x * 12.9898 + y * 78.233) * 43758.5453
    return v - math.floor(v)


def apply_finish(
    img: np.ndarray, style: Style, rng: np.random.Generator, vignette: bool = False
) -> np.ndarray:
    """Colour balance, saturation, haze, gamma, vignette, blur and sensor noise -> uint8.

    The colour steps are one affine 3x4 matrix (cv2.transform) and a gamma lookup table; the
    noise is luminance noise per pixel plus chroma noise at half resolution (as a demosaiced
    sensor's)."""
    g = np.array(style.gains, np.float64) * style.brightness
    sat, hz = style.saturation, style.haze
    m = sat * np.diag(g) + (1.0 - sat) / 3.0 * np.ones((3, 1)) @ g[None, :]
    off = hz * np.array(style.haze_colour, np.float64)
    affine = np.c_[(1.0 - hz) * m, off]
    x = cv2.transform(img, affine)
    if style.gamma != 1.0:
        lut = np.clip(((np.arange(256) / 255.0) ** style.gamma) * 255.0 + 0.5, 0, 255)
        x = cv2.LUT(x, lut.astype(np.uint8))
    h, w = x.shape[:2]
    if vignette and style.vignette > 0:
        yy = ((np.arange(h, dtype=np.float32) - h / 2) / (h / 2)) ** 2
        xx = ((np.arange(w, dtype=np.float32) - w / 2) / (w / 2)) ** 2
        fac = 1.0 - np.float32(style.vignette * 0.5) * (yy[:, None] + xx[None, :])
        x = np.clip(x * fac[..., None] + 0.5, 0, 255).astype(np.uint8)
    if style.blur_px > 0.05:
        x = cv2.GaussianBlur(x, (0, 0), style.blur_px)
    if style.noise_sigma <= 0:
        return x
    s = np.float32(style.noise_sigma)
    out = np.empty_like(x)
    step = 512
    for r0 in range(0, h, step):
        rows = min(step, h - r0)
        lum = rng.standard_normal((rows, w), dtype=np.float32) * (s * 0.8)
        ch = rng.standard_normal(((rows + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
        ch = cv2.resize(ch, (w, rows), interpolation=cv2.INTER_LINEAR) * (s * 0.6)
        ch += lum[..., None]
        ch += x[r0 : r0 + rows]
        ch += 0.5
        np.clip(ch, 0, 255, out=ch)
        out[r0 : r0 + rows] = ch
    return out
