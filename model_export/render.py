"""Rendering a `World`: north-up orthos (the satellite image) and pinhole drone photos.

Ortho (`render_ortho`): a north-up raster covering `bounds` (default: the world) at `gsd` metres
per pixel; row 0 is the northern edge (ymax), column 0 the western edge (xmin), so pixel (i, j)
covers x in [xmin + j*gsd, xmin + (j+1)*gsd], exactly as a GeoTIFF with geotransform
(xmin, gsd, 0, ymax, 0, -gsd). Everything procedural (ground noise, crop stripes, forest crowns)
is a function of world coordinates, so any window renders the same pixels as the whole world
(this is what lets drone photos use small local renders, and the satellite be written in tiles).
A `Style` bundles palette, season, sun (azimuth clockwise from north towards the sun, elevation;
they set building and tree shadows), colour jitter, haze, blur and sensor noise.

Drone camera (`Camera`, a pinhole over flat ground at z = 0):
- position x, y in the world's UTM CRS, `altitude_m` above the ground;
- `heading_deg`: where the top of the image points, clockwise from north (0 = north up,
  90 = east up), as a gimbal yaw;
- `pitch_deg`: the optical axis' angle off nadir (0 = straight down), tilted forward along the
  heading, so the top of an oblique photo shows the ground farther away;
- `hfov_deg`: horizontal field of view; square pixels; principal point at the image centre.
Camera frame: x right, y down, z along the optical axis; pixel (u, v) = (column, row) with
integer values at pixel centres, so the image spans [-0.5, W-0.5] x [-0.5, H-0.5].

`render_drone` returns the photo and its footprint: the four image corners ray-cast to z = 0 in
the order top-left, top-right, bottom-right, bottom-left (for heading 0 and pitch 0: NW, NE, SE,
SW, i.e. clockwise on the map). `Camera.centre_ground()` is the true centre, the ground point
seen at the image centre (the principal point). The ground is the ortho texture of the world
warped through the ground-plane homography (mip-mapped: each pixel samples the texture level
closest to its own ground resolution); buildings (walls, two-tone gable roofs) and single trees
are then drawn in 3D, far to near, so walls show and tall things lean and occlude when oblique
(forest and hedge canopies stay in the ground texture: flat crowns with their shadows).
At pitch 0 and heading 0 a photo is, up to scale, style, noise and the lean of tall things, the
satellite crop of its footprint (tested).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon

from .world import (
    Building,
    Canopy,
    Field,
    World,
)

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# ------------------------------------------------------------------------------------- styles

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
_CARS = {
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


# ----------------------------------------------------------------------------------- canvas


class _Canvas:
    """A window of the world at some gsd, with world->pixel drawing helpers (cv2, sub-pixel)."""

    def __init__(self, bounds, gsd: float):
        self.x0, self.y0, self.x1, self.y1 = (float(b) for b in bounds)
        self.g = float(gsd)
        self.w = round((self.x1 - self.x0) / self.g)
        self.h = round((self.y1 - self.y0) / self.g)
        self.img = np.zeros((self.h, self.w, 3), np.uint8)
        self.shadow = np.zeros((self.h, self.w), np.uint8)
        self.thin = np.zeros((self.h, self.w), np.uint8)  # white markings, alpha

    def query_box(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        return (self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)

    def pix(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        px = (xy[..., 0] - self.x0) / self.g - 0.5
        py = (self.y1 - xy[..., 1]) / self.g - 0.5
        out = np.stack([px, py], axis=-1) * _ONE
        return np.clip(np.round(out), -(2**28), 2**28).astype(np.int32)

    def px(self, metres: float) -> float:
        return metres / self.g

    def fill(self, geom, colour, target=None, aa: bool = True) -> None:
        rings = []
        for p in _polygons(geom):
            rings.append(self.pix(np.asarray(p.exterior.coords)))
            rings += [self.pix(np.asarray(r.coords)) for r in p.interiors]
        if rings:
            img = self.img if target is None else target
            cv2.fillPoly(img, rings, _c(colour), _AA if aa else cv2.LINE_8, _SHIFT)

    def fill_coords(self, coords: np.ndarray, colour, target=None) -> None:
        img = self.img if target is None else target
        cv2.fillPoly(img, [self.pix(coords)], _c(colour), _AA, _SHIFT)

    def line(self, coords: np.ndarray, colour, width_m: float, target=None, closed=False) -> None:
        img = self.img if target is None else target
        t = max(1, round(width_m / self.g))
        cv2.polylines(img, [self.pix(coords)], closed, _c(colour), t, _AA, _SHIFT)

    def thin_line(self, coords: np.ndarray, width_m: float, closed: bool = False) -> None:
        """A white marking: thinner than a pixel becomes a faint full pixel."""
        wp = width_m / self.g
        alpha = 255 if wp >= 1 else max(20, round(255 * wp))
        t = max(1, round(wp))
        cv2.polylines(self.thin, [self.pix(coords)], closed, alpha, t, _AA, _SHIFT)

    def circles(self, x, y, r, colours, target=None) -> None:
        img = self.img if target is None else target
        c = self.pix(np.stack([x, y], axis=-1))
        rr = np.maximum(np.round(np.asarray(r) / self.g * _ONE), _ONE // 2).astype(np.int64)
        single = np.ndim(colours) <= 1
        for i in range(len(c)):
            col = colours if single else colours[i]
            cv2.circle(img, (int(c[i, 0]), int(c[i, 1])), int(rr[i]), _c(col), -1, _AA, _SHIFT)

    def xy_grids(self) -> tuple[np.ndarray, np.ndarray]:
        """World x of each column and y of each row (pixel centres)."""
        xs = self.x0 + (np.arange(self.w) + 0.5) * self.g
        ys = self.y1 - (np.arange(self.h) + 0.5) * self.g
        return xs, ys


def _c(colour) -> tuple:
    if np.ndim(colour) == 0:
        return (float(colour),)
    return tuple(float(v) for v in colour)


def _polygons(geom) -> list[Polygon]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


@lru_cache(maxsize=8)
def _noise_grids(seed: int, bounds: tuple) -> tuple[np.ndarray, np.ndarray, float, float]:
    """World-fixed smooth noise (coarse: 40 m cells, fine: 5 m cells), row 0 at the north.
    Sampled by every render of the world, so windows agree."""
    x0, y0, x1, y1 = bounds
    out = []
    for cell, key in ((40.0, 1), (5.0, 2)):
        n = math.ceil(max(x1 - x0, y1 - y0) / cell) + 4
        rng = np.random.default_rng([seed, 77, key])
        g = rng.standard_normal((n, n), dtype=np.float32)
        g = cv2.GaussianBlur(g, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
        out.append(g / max(float(g.std()), 1e-6))
    return out[0], out[1], 40.0, 5.0


def _sample_noise(world: World, cv: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    coarse, fine, c_cell, f_cell = _noise_grids(world.seed, tuple(world.bounds))
    wx0, _, _, wy1 = world.bounds
    out = []
    for grid, cell, interp in ((coarse, c_cell, cv2.INTER_CUBIC), (fine, f_cell, cv2.INTER_LINEAR)):
        s = cv.g / cell
        # grid index of window pixel (j, i): continuous grid coordinates, 2 cells of padding
        bx = (cv.x0 - wx0 + 0.5 * cv.g) / cell - 0.5 + 2
        by = (wy1 - cv.y1 + 0.5 * cv.g) / cell - 0.5 + 2
        m = np.array([[s, 0, bx], [0, s, by]], dtype=np.float64)
        out.append(
            cv2.warpAffine(
                grid,
                m,
                (cv.w, cv.h),
                flags=interp | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT,
            )
        )
    return out[0], out[1]


# -------------------------------------------------------------------------------------- ortho


def render_ortho(
    world: World,
    gsd: float,
    style: Style,
    bounds: tuple[float, float, float, float] | None = None,
    objects: bool = True,
    finish: bool = True,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A north-up image (uint8, H x W x 3) of `bounds` (default: the whole world) at `gsd`.

    objects=False leaves out roofs and single-tree crowns (their shadows stay): the ground
    texture for drone photos, where those are drawn standing in 3D. finish=False skips the
    style's colour finish, blur and noise (textures get them per photo instead)."""
    cv = _Canvas(bounds or world.bounds, gsd)
    if cv.w <= 0 or cv.h <= 0:
        raise ValueError(f"empty window {bounds} at gsd {gsd}")
    q = cv.query_box(30.0)
    coarse, fine = _sample_noise(world, cv)
    _base(cv, style, coarse, fine)
    for s in world.query("surfaces", q):
        cv.fill(s.polygon, style.colour(s.kind, s.tone, 0.22))
    fields = world.query("fields", q)
    _fields(cv, style, fields, coarse)
    for f in world.query("forests", q):
        cv.fill(f.polygon, style.colour("forest_floor"))
    _water(cv, world, style, q)
    _roads(cv, world, style, q)
    _parkings(cv, world, style, q)
    _sports(cv, world, style, q)
    _apply_thin(cv, style)
    _cars(cv, world, style, q)
    canopy = _canopy_in(world, q)
    trees = world.query("trees", q)
    buildings = world.query("buildings", q)
    _shadows(cv, style, buildings, trees, canopy)
    _draw_canopy(cv, style, canopy)
    if objects:
        _roofs(cv, style, buildings)
        _tree_crowns(cv, style, trees)
    if not finish:
        return cv.img
    return _finish(cv.img, style, rng or np.random.default_rng([style.seed, 1]))


def _base(cv: _Canvas, style: Style, coarse: np.ndarray, fine: np.ndarray) -> None:
    """Meadow ground: two grass colours mixed by world-fixed coarse noise, with fine grain."""
    a = style.colour("grass_a")
    d = style.colour("grass_b") - a
    for r0 in range(0, cv.h, 512):
        mix = np.clip(coarse[r0 : r0 + 512] * np.float32(0.35) + np.float32(0.5), 0.0, 1.0)
        grain = fine[r0 : r0 + 512] * np.float32(0.05) + np.float32(1.0)
        mg = mix * grain
        chans = [
            cv2.addWeighted(grain, float(a[c]), mg, float(d[c]), 0.0, dtype=cv2.CV_8U)
            for c in range(3)
        ]
        cv.img[r0 : r0 + 512] = cv2.merge(chans)


def _fields(cv: _Canvas, style: Style, fields: list[Field], coarse: np.ndarray) -> None:
    """Fill each field, then modulate its pixels with rows and tramlines in world coordinates
    (phases relative to a whole-km origin, so every window draws the same stripes)."""
    if not fields:
        return
    ids = np.zeros((cv.h, cv.w), np.uint16)
    xs, ys = cv.xy_grids()
    ox = math.floor(cv.x0 / 1000.0) * 1000.0
    oy = math.floor(cv.y0 / 1000.0) * 1000.0
    xs = (xs - ox).astype(np.float32)
    ys = (ys - oy).astype(np.float32)
    width = max(1.6, 1.2 * cv.g)  # tramline profile width (m)
    for k, f in enumerate(fields, start=1):
        colour, a = style.crop(f)
        cv.fill(f.polygon, colour)
        cv.fill(f.polygon, k, target=ids, aa=False)
    for k, f in enumerate(fields, start=1):
        _, a = style.crop(f)
        bx0, by0, bx1, by1 = f.polygon.bounds
        c0 = max(0, int((bx0 - cv.x0) / cv.g) - 1)
        c1 = min(cv.w, int((bx1 - cv.x0) / cv.g) + 2)
        r0 = max(0, int((cv.y1 - by1) / cv.g) - 1)
        r1 = min(cv.h, int((cv.y1 - by0) / cv.g) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        mask = ids[r0:r1, c0:c1] == k
        if not mask.any():
            continue
        # Rows run along row_angle: the pattern varies across them.
        t = math.radians(f.row_angle_deg + 90.0)
        d = xs[None, c0:c1] * np.float32(math.cos(t)) + ys[r0:r1, None] * np.float32(math.sin(t))
        # Stripes finer than ~2.5 pixels would alias: fade them out.
        amp = a * float(np.clip((f.spacing_m / cv.g - 2.5) / 2.0, 0.0, 1.0))
        fac = np.cos(d * np.float32(2 * math.pi / f.spacing_m)) * np.float32(amp)
        fac += coarse[r0:r1, c0:c1] * np.float32(0.05) + np.float32(1.0)
        if f.tramline_m > 0:
            tm = np.abs(np.mod(d, np.float32(f.tramline_m)) - np.float32(0.5 * f.tramline_m))
            prof = np.clip(1.0 - tm / np.float32(width), 0.0, 1.0)
            fac -= prof * np.float32(0.22 * min(1.0, 1.6 / width))
        sub = cv.img[r0:r1, c0:c1]
        mod = np.clip(sub * fac[..., None], 0, 255).astype(np.uint8)
        np.copyto(sub, mod, where=mask[..., None])


def _water(cv: _Canvas, world: World, style: Style, q) -> None:
    for lk in world.query("lakes", q):
        ring = np.asarray(lk.polygon.exterior.coords)
        cv.line(ring, style.colour("reeds"), 4.0, closed=True)
        cv.fill(lk.polygon, style.colour("water"))
        for d, key in ((-5.0, 0.35), (-12.0, 0.75)):
            inner = lk.polygon.buffer(d, quad_segs=4)
            mix = style.colour("water") * (1 - key) + style.colour("water_deep") * key
            cv.fill(inner, mix)
    for r in world.query("rivers", q):
        c = np.asarray(r.line.coords)
        cv.line(c, style.colour("bank"), r.width_m + 5.0)
        cv.line(c, style.colour("reeds"), r.width_m + 2.0)
        cv.line(c, style.colour("water"), r.width_m)
        cv.line(
            c, style.colour("water") * 0.75 + style.colour("water_deep") * 0.25, r.width_m * 0.5
        )


def _dashes(line, dash: float, gap: float) -> list[np.ndarray]:
    length = line.length
    starts = np.arange(gap / 2, max(0.0, length - dash), dash + gap)
    if not len(starts):
        return []
    a = shapely.get_coordinates(shapely.line_interpolate_point(line, starts))
    b = shapely.get_coordinates(shapely.line_interpolate_point(line, starts + dash))
    return [np.array([p, q]) for p, q in zip(a, b, strict=True)]


def _roads(cv: _Canvas, world: World, style: Style, q) -> None:
    roads = world.query("roads", q)
    for r in roads:
        if r.kind in ("path", "track"):
            key = "path" if r.kind == "path" else "track"
            cv.line(np.asarray(r.line.coords), style.colour(key), r.width_m)
    paved = [r for r in roads if r.kind in ("street", "main")]
    for r in paved:
        cv.line(np.asarray(r.line.coords), style.colour("asphalt_edge"), r.width_m + 0.8)
    for r in paved:
        cv.line(np.asarray(r.line.coords), style.colour("asphalt"), r.width_m)
    for rb in world.query("roundabouts", q):
        c = np.array([[rb.x, rb.y]])
        outer, inner = rb.radius_m + rb.width_m / 2, rb.radius_m - rb.width_m / 2
        cv.circles(c[:, 0], c[:, 1], [outer + 0.4], style.colour("asphalt_edge"))
        cv.circles(c[:, 0], c[:, 1], [outer], style.colour("asphalt"))
        cv.circles(c[:, 0], c[:, 1], [inner], style.colour("marking") * 0.85)
        cv.circles(c[:, 0], c[:, 1], [inner - 0.6], style.colour("lawn", 0.7))
    for r in paved:
        if r.kind != "main":
            continue
        for seg in _dashes(r.line, 3.0, 6.0):
            cv.thin_line(seg, 0.15)
        for side in (-1.0, 1.0):
            off = r.line.offset_curve(side * (r.width_m / 2 - 0.45), quad_segs=2)
            for part in getattr(off, "geoms", [off]):
                if not part.is_empty:
                    cv.thin_line(np.asarray(part.coords), 0.15)
    for rb in world.query("roundabouts", q):
        th = np.linspace(0, 2 * math.pi, 48)
        rr = rb.radius_m + rb.width_m / 2 - 0.45
        cv.thin_line(np.c_[rb.x + rr * np.cos(th), rb.y + rr * np.sin(th)], 0.15, closed=True)


def _parkings(cv: _Canvas, world: World, style: Style, q) -> None:
    for p in world.query("parkings", q):
        cv.fill_coords(p.rect.corners(), style.colour("asphalt", 0.6))
        for seg in p.lines():
            cv.thin_line(seg, 0.12)


def _sports(cv: _Canvas, world: World, style: Style, q) -> None:
    for s in world.query("sports", q):
        r = s.rect
        if s.kind == "football":
            big = replace(r, length=r.length + 8.0, width=r.width + 8.0)
            cv.fill_coords(big.corners(), style.colour("pitch", 0.3))
            n = 12
            for i in range(n):
                u = -r.length / 2 + (i + 0.5) * r.length / n
                band = replace(r, cx=r.local(u, 0)[0], cy=r.local(u, 0)[1], length=r.length / n)
                cv.fill_coords(band.corners(), style.colour("pitch", 0.35 + 0.3 * (i % 2)))
            _pitch_lines(cv, r)
        else:
            cv.fill_coords(
                replace(r, length=r.length + 2, width=r.width + 2).corners(),
                style.colour("court_surround"),
            )
            cv.fill_coords(r.corners(), style.colour(s.surface))
            w1 = r.width / s.courts
            for k in range(s.courts):
                v = -r.width / 2 + (k + 0.5) * w1
                c = r.local(0, v)
                _tennis_lines(cv, replace(r, cx=c[0], cy=c[1], width=w1), style)


def _rect_lines(cv: _Canvas, r, u0, u1, v0, v1, width) -> None:
    pts = np.array([r.local(u0, v0), r.local(u1, v0), r.local(u1, v1), r.local(u0, v1)])
    cv.thin_line(pts, width, closed=True)


def _pitch_lines(cv: _Canvas, r) -> None:
    L, W = r.length / 2, r.width / 2
    w = 0.12
    _rect_lines(cv, r, -L, L, -W, W, w)
    cv.thin_line(np.array([r.local(0, -W), r.local(0, W)]), w)
    th = np.linspace(0, 2 * math.pi, 40)
    circle = np.array([r.local(9.15 * math.cos(t), 9.15 * math.sin(t)) for t in th])
    cv.thin_line(circle, w, closed=True)
    for s in (-1, 1):
        _rect_lines(cv, r, s * L, s * (L - 16.5), -20.16, 20.16, w)
        _rect_lines(cv, r, s * L, s * (L - 5.5), -9.16, 9.16, w)


def _tennis_lines(cv: _Canvas, court, style: Style) -> None:
    L, W, S = 23.77 / 2, 10.97 / 2, 8.23 / 2
    w = 0.05 * 2
    _rect_lines(cv, court, -L, L, -W, W, w)
    for v in (-S, S):
        cv.thin_line(np.array([court.local(-L, v), court.local(L, v)]), w)
    for u in (-6.4, 6.4):
        cv.thin_line(np.array([court.local(u, -S), court.local(u, S)]), w)
    cv.thin_line(np.array([court.local(-6.4, 0), court.local(6.4, 0)]), w)
    cv.line(np.array([court.local(0, -W - 0.9), court.local(0, W + 0.9)]), style.colour("net"), 0.1)


def _apply_thin(cv: _Canvas, style: Style) -> None:
    white = style.colour("marking").astype(np.float32)
    for r0 in range(0, cv.h, 512):
        m = cv.thin[r0 : r0 + 512]
        rows, cols = np.nonzero(m)
        if not len(rows):
            continue
        a = m[rows, cols].astype(np.float32)[:, None] / 255.0
        px = cv.img[r0 + rows, cols].astype(np.float32)
        cv.img[r0 + rows, cols] = np.clip(px * (1 - a) + white * a, 0, 255)


def _cars(cv: _Canvas, world: World, style: Style, q) -> None:
    for p in world.query("parkings", q):
        for car in p.cars:
            r = car.rect()
            off = style.shadow_offset(1.4)
            cv.fill_coords(r.corners() + off, 255, target=cv.shadow)
            body = np.array(_CARS[car.colour], dtype=np.float64)
            cv.fill_coords(r.corners(), body)
            cabin = replace(r, length=r.length * 0.5, width=r.width * 0.8)
            c = r.local(-0.1 * r.length, 0)
            cabin = replace(cabin, cx=c[0], cy=c[1])
            cv.fill_coords(cabin.corners(), body * 0.55 + 20)


def _canopy_in(world: World, q) -> Canopy:
    c = world.canopy
    if not len(c):
        return c
    m = (c.x >= q[0]) & (c.x <= q[2]) & (c.y >= q[1]) & (c.y <= q[3])
    return c.subset(m)


def _part_shadow(part, style: Style) -> np.ndarray:
    """The shadow polygon of a building part (convex hull of its base and shifted top)."""
    base = part.rect.corners()
    pts = [base, base + style.shadow_offset(part.eaves_m)]
    if part.gable:
        a, _ = part.rect.axes()
        c = np.array([part.rect.cx, part.rect.cy])
        ridge = np.array([c - a * part.rect.length / 2, c + a * part.rect.length / 2])
        pts.append(ridge + style.shadow_offset(part.ridge_m))
    hull = cv2.convexHull(np.vstack(pts).astype(np.float32))
    return hull.reshape(-1, 2).astype(np.float64)


def _shadows(cv: _Canvas, style: Style, buildings, trees, canopy: Canopy) -> None:
    for b in buildings:
        for part in b.parts:
            cv.fill_coords(_part_shadow(part, style), 255, target=cv.shadow)
    if trees:
        x = np.array([t.x for t in trees])
        y = np.array([t.y for t in trees])
        r = np.array([t.crown_radius_m for t in trees])
        h = np.array([t.height_m for t in trees])
        off = style.shadow_offset(h - r)
        cv.circles(x + off[:, 0], y + off[:, 1], r, 255, target=cv.shadow)
        # the trunk's shadow
        for i in range(len(x)):
            cv.line(
                np.array([[x[i], y[i]], [x[i] + off[i, 0], y[i] + off[i, 1]]]),
                255,
                0.4,
                target=cv.shadow,
            )
    if len(canopy):
        off = style.shadow_offset(canopy.h * 0.35)
        cv.circles(canopy.x + off[:, 0], canopy.y + off[:, 1], canopy.r, 255, target=cv.shadow)
    k = np.float32(style.shadow)
    for r0 in range(0, cv.h, 512):
        m = cv.shadow[r0 : r0 + 512]
        rows, cols = np.nonzero(m)
        if not len(rows):
            continue
        f = 1.0 - k * m[rows, cols].astype(np.float32)[:, None] / 255.0
        px = cv.img[r0 + rows, cols].astype(np.float32)
        # shadows are darker and a little bluer (sky light)
        cv.img[r0 + rows, cols] = np.clip(px * f * np.array([0.96, 0.98, 1.04], np.float32), 0, 255)


def _draw_canopy(cv: _Canvas, style: Style, c: Canopy) -> None:
    if not len(c):
        return
    sun = style.sun_vector[:2]
    order = np.argsort(c.h, kind="stable")
    c = c.subset(order)
    base = style.crowns(c.conifer, c.tone)
    cv.circles(c.x, c.y, c.r, base * 0.82)
    hx, hy = c.x + sun[0] * c.r * 0.3, c.y + sun[1] * c.r * 0.3
    cv.circles(hx, hy, c.r * 0.6, np.clip(base * 1.12, 0, 255))


def _tree_crowns(cv: _Canvas, style: Style, trees) -> None:
    if not trees:
        return
    sun = style.sun_vector[:2]
    x = np.array([t.x for t in trees])
    y = np.array([t.y for t in trees])
    r = np.array([t.crown_radius_m for t in trees])
    base = style.crowns(
        np.array([t.kind == "conifer" for t in trees]), np.array([_tone(t.x, t.y) for t in trees])
    )
    cv.circles(x, y, r, base * 0.8)
    cv.circles(x + sun[0] * r * 0.3, y + sun[1] * r * 0.3, r * 0.62, np.clip(base * 1.12, 0, 255))


def _roof_planes(part) -> list[tuple[np.ndarray, np.ndarray]]:
    """(corners (4, 3), unit normal) of a part's roof planes: 1 for flat, 2 for a gable (the
    ridge runs along the rect's length, from r0 at the back to r1 at the front)."""
    c = part.rect.corners()
    e, h = part.eaves_m, part.ridge_m
    if not part.gable:
        return [(np.c_[c, np.full(4, e)], np.array([0.0, 0.0, 1.0]))]
    a, n = part.rect.axes()
    ctr = np.array([part.rect.cx, part.rect.cy])
    r0, r1 = ctr - a * part.rect.length / 2, ctr + a * part.rect.length / 2
    slope = math.atan2(h - e, part.rect.width / 2)
    sn, cs = math.sin(slope), math.cos(slope)
    return [
        (np.array([[*c[0], e], [*c[1], e], [*r1, h], [*r0, h]]), np.array([*(-n * sn), cs])),
        (np.array([[*c[2], e], [*c[3], e], [*r0, h], [*r1, h]]), np.array([*(n * sn), cs])),
    ]


def _roofs(cv: _Canvas, style: Style, buildings: list[Building]) -> None:
    for b in sorted(buildings, key=lambda b: b.height_m):
        base = style.colour(f"roof_{b.roof}", b.wall_tone, 0.18)
        for part in sorted(b.parts, key=lambda p: p.ridge_m):
            for poly, normal in _roof_planes(part):
                cv.fill_coords(poly[:, :2], np.clip(base * style.shade(normal), 0, 255))
            if part.gable:
                a, _ = part.rect.axes()
                ctr = np.array([part.rect.cx, part.rect.cy])
                ridge = np.array([ctr - a * part.rect.length / 2, ctr + a * part.rect.length / 2])
                cv.line(ridge, base * 0.7, 0.25)
            else:
                cv.line(part.rect.corners(), base * 0.78, 0.5, closed=True)


# ------------------------------------------------------------------------------------- finish


def _finish(
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


# ------------------------------------------------------------------------------------ texture


@dataclass
class Texture:
    """A ground texture (no roofs, no single-tree crowns) with its mip levels: level k has
    pixel size gsd * 2**k; pixel (i, j) of level k is centred on
    (x0 + (j + 0.5) * gsd_k, y1 - (i + 0.5) * gsd_k)."""

    levels: list[np.ndarray]
    x0: float
    y1: float
    gsd: float
    style: Style
    bounds: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))


def render_texture(
    world: World, style: Style, gsd: float, bounds: tuple[float, float, float, float] | None = None
) -> Texture:
    """The drone ground texture of a window (default: the whole world) with mip levels.
    Pre-render one per style to render many views fast."""
    b = tuple(float(v) for v in (bounds or world.bounds))
    img = render_ortho(world, gsd, style, b, objects=False, finish=False)
    levels = [img]
    while min(levels[-1].shape[:2]) >= 32 and len(levels) < 7:
        h, w = levels[-1].shape[:2]
        h2, w2 = h // 2, w // 2
        levels.append(
            cv2.resize(levels[-1][: h2 * 2, : w2 * 2], (w2, h2), interpolation=cv2.INTER_AREA)
        )
    y1 = b[1] + img.shape[0] * gsd
    return Texture(levels, b[0], y1, float(gsd), style, b)


# ------------------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    """A pinhole drone camera over flat ground (see the module docstring for conventions)."""

    x: float
    y: float
    altitude_m: float
    heading_deg: float = 0.0
    pitch_deg: float = 0.0
    hfov_deg: float = 73.7

    def rotation(self) -> np.ndarray:
        """World (east, north, up) -> camera (right, down, forward), rows are the camera axes."""
        h, p = math.radians(self.heading_deg), math.radians(self.pitch_deg)
        x_cam = [math.cos(h), -math.sin(h), 0.0]
        y_cam = [-math.cos(p) * math.sin(h), -math.cos(p) * math.cos(h), -math.sin(p)]
        z_cam = [math.sin(p) * math.sin(h), math.sin(p) * math.cos(h), -math.cos(p)]
        return np.array([x_cam, y_cam, z_cam])

    def focal_px(self, size: tuple[int, int]) -> float:
        return (size[0] / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        f = self.focal_px(size)
        return np.array([[f, 0, size[0] / 2 - 0.5], [0, f, size[1] / 2 - 0.5], [0, 0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.altitude_m])

    def project(self, xyz: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """World points (n, 3) -> pixel (u, v) (n, 2) and depth along the optical axis (n,)."""
        pc = (np.asarray(xyz, dtype=np.float64) - self.position) @ self.rotation().T
        z = pc[:, 2]
        k = self.intrinsics(size)
        safe = np.where(np.abs(z) < 1e-6, 1e-6, z)
        uv = np.c_[k[0, 0] * pc[:, 0] / safe + k[0, 2], k[1, 1] * pc[:, 1] / safe + k[1, 2]]
        return uv, z

    def ground_homography(self, size: tuple[int, int]) -> np.ndarray:
        """3x3: ground (x, y, 1) at z = 0 -> image (u, v, 1)."""
        r = self.rotation()
        t = -r @ self.position
        return self.intrinsics(size) @ np.c_[r[:, 0], r[:, 1], t]

    def ground_points(self, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Pixels (n, 2) -> ground points (n, 2) at z = 0."""
        hinv = np.linalg.inv(self.ground_homography(size))
        p = np.c_[np.asarray(uv, dtype=np.float64), np.ones(len(uv))] @ hinv.T
        return p[:, :2] / p[:, 2:3]

    def footprint(self, size: tuple[int, int]) -> np.ndarray:
        """(4, 2): the image corners on the ground: top-left, top-right, bottom-right,
        bottom-left."""
        w, h = size
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        return self.ground_points(corners, size)

    def centre_ground(self) -> tuple[float, float]:
        """The true centre: the ground point on the optical axis (seen at the image centre)."""
        h, p = math.radians(self.heading_deg), math.radians(self.pitch_deg)
        d = self.altitude_m * math.tan(p)
        return self.x + d * math.sin(h), self.y + d * math.cos(h)

    def ground_resolution(self, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Metres of ground per pixel at these pixels (geometric mean of the two directions)."""
        uv = np.asarray(uv, dtype=np.float64)
        g0 = self.ground_points(uv, size)
        gu = self.ground_points(uv + [1.0, 0.0], size) - g0
        gv = self.ground_points(uv + [0.0, 1.0], size) - g0
        return np.sqrt(np.abs(gu[:, 0] * gv[:, 1] - gu[:, 1] * gv[:, 0]))


def random_camera(
    world: World,
    rng: np.random.Generator,
    size: tuple[int, int] = (640, 480),
    altitude: tuple[float, float] = (60.0, 200.0),
    pitch: tuple[float, float] = (0.0, 35.0),
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
            float(rng.uniform(*pitch)),
            float(rng.uniform(*hfov)),
        )
        fp = cam.footprint(size)
        lo_x, hi_x = xmin + margin - fp[:, 0].min(), xmax - margin - fp[:, 0].max()
        lo_y, hi_y = ymin + margin - fp[:, 1].min(), ymax - margin - fp[:, 1].max()
        if lo_x < hi_x and lo_y < hi_y:
            return replace(cam, x=float(rng.uniform(lo_x, hi_x)), y=float(rng.uniform(lo_y, hi_y)))
        altitude = (altitude[0], max(altitude[0], 0.8 * altitude[1]))
    raise ValueError(f"world {world.size_m} m is too small for these cameras")


# -------------------------------------------------------------------------------------- drone


def render_drone(
    world: World,
    camera: Camera,
    style: Style,
    size: tuple[int, int] = (640, 480),
    texture: Texture | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, Polygon]:
    """A drone photo (uint8, H x W x 3, size = (W, H)) and its ground footprint (UTM polygon,
    corners top-left, top-right, bottom-right, bottom-left).

    `texture`: a pre-rendered `render_texture` of this world and style (fast path for
    training); without one, a local texture of the footprint is rendered at the photo's own
    ground resolution (sharper, ~0.1-0.5 s). Ground outside the texture repeats its edge."""
    fp = camera.footprint(size)
    if texture is None:
        texture = _local_texture(world, camera, style, size, fp)
    img = _warp_ground(texture, camera, size)
    _draw_3d(img, world, camera, style, size, fp)
    noise_rng = rng or np.random.default_rng([style.seed, 2])
    return _finish(img, style, noise_rng, vignette=True), Polygon(fp)


def _local_texture(world: World, camera: Camera, style: Style, size, fp: np.ndarray) -> Texture:
    w, h = size
    probe = np.array([[w / 2 - 0.5, h - 1.0], [w / 2 - 0.5, h / 2 - 0.5], [0.0, h - 1.0]])
    res = float(camera.ground_resolution(probe, size).min())
    gsd = float(np.clip(res, 0.06, 4.0))
    x0, y0 = fp.min(axis=0) - 3.0 * gsd - 1.0
    x1, y1 = fp.max(axis=0) + 3.0 * gsd + 1.0
    area = (x1 - x0) * (y1 - y0)
    if area / gsd**2 > 9e6:
        gsd = math.sqrt(area / 9e6)
    # Snap the window to the gsd grid of the world (so pixels agree with other renders).
    wx0, wy0 = world.bounds[0], world.bounds[1]
    x0 = wx0 + math.floor((x0 - wx0) / gsd) * gsd
    y0 = wy0 + math.floor((y0 - wy0) / gsd) * gsd
    x1 = x0 + math.ceil((x1 - x0) / gsd) * gsd
    y1 = y0 + math.ceil((y1 - y0) / gsd) * gsd
    return render_texture(world, style, gsd, (x0, y0, x1, y1))


def _warp_ground(tex: Texture, camera: Camera, size) -> np.ndarray:
    """Mip-mapped perspective warp of the texture: trilinear between the two texture levels
    nearest each pixel's ground resolution."""
    w, h = size
    hinv = np.linalg.inv(camera.ground_homography(size))
    # Level map on a coarse grid, then upsampled.
    gu, gv = np.meshgrid(np.linspace(-0.5, w - 0.5, 9), np.linspace(-0.5, h - 0.5, 7))
    res = camera.ground_resolution(np.c_[gu.ravel(), gv.ravel()], size).reshape(gu.shape)
    lvl = np.log2(np.maximum(res, 1e-6) / tex.gsd)
    lvl = np.clip(lvl, 0.0, len(tex.levels) - 1.0).astype(np.float32)
    lo, hi = math.floor(float(lvl.min())), math.ceil(float(lvl.max()))
    out = None
    lvl_full = None
    if hi > lo:
        lvl_full = cv2.resize(lvl, (w, h), interpolation=cv2.INTER_LINEAR)
    for k in range(lo, hi + 1):
        warped = _warp_level(tex, k, hinv, size)
        if lvl_full is None:
            return warped
        wk = np.clip(1.0 - np.abs(lvl_full - k), 0.0, 1.0)[..., None]
        part = warped.astype(np.float32) * wk
        out = part if out is None else out + part
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _warp_level(tex: Texture, k: int, hinv: np.ndarray, size) -> np.ndarray:
    g = tex.gsd * 2**k
    level = tex.levels[k]
    # image pixel -> ground (hinv) -> texture pixel of level k
    a_inv = np.array([[1 / g, 0, -tex.x0 / g - 0.5], [0, -1 / g, tex.y1 / g - 0.5], [0, 0, 1.0]])
    m = a_inv @ hinv
    # Crop the level to what the view needs (cv2's remap works in 16-bit coordinates).
    w, h = size
    corners = np.array([[-1, -1, 1], [w, -1, 1], [w, h, 1], [-1, h, 1]], dtype=np.float64)
    tp = corners @ m.T
    tp = tp[:, :2] / tp[:, 2:3]
    c0 = int(np.clip(math.floor(tp[:, 0].min()) - 2, 0, level.shape[1] - 1))
    r0 = int(np.clip(math.floor(tp[:, 1].min()) - 2, 0, level.shape[0] - 1))
    c1 = int(np.clip(math.ceil(tp[:, 0].max()) + 3, c0 + 1, level.shape[1]))
    r1 = int(np.clip(math.ceil(tp[:, 1].max()) + 3, r0 + 1, level.shape[0]))
    crop = level[r0:r1, c0:c1]
    m = np.array([[1, 0, -c0], [0, 1, -r0], [0, 0, 1.0]]) @ m
    return cv2.warpPerspective(
        crop,
        m,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


class _Packed:
    """A world's building parts and single trees as arrays (built once per world): the 3D
    pass of a drone view projects them all with one matrix product."""

    def __init__(self, world: World):
        parts = [(i, part) for i, b in enumerate(world.buildings) for part in b.parts]
        n = len(parts)
        self.corners = np.zeros((n, 4, 2))
        self.ridge_ends = np.zeros((n, 2, 2))  # back (r0), front (r1)
        self.eaves, self.ridge = np.zeros(n), np.zeros(n)
        self.axis_n = np.zeros((n, 2))  # unit vector across the part (its +n side)
        self.building = np.zeros(n, np.int64)
        for k, (i, part) in enumerate(parts):
            rect = part.rect
            a, nv = rect.axes()
            ctr = np.array([rect.cx, rect.cy])
            self.corners[k] = rect.corners()
            self.ridge_ends[k] = [ctr - a * rect.length / 2, ctr + a * rect.length / 2]
            self.eaves[k], self.ridge[k] = part.eaves_m, part.ridge_m
            self.axis_n[k] = nv
            self.building[k] = i
        self.gable = self.ridge > self.eaves + 0.05
        self.half_width = np.array([p.rect.width / 2 for _, p in parts]).reshape(n)
        self.centre = self.corners.mean(axis=1) if n else np.zeros((0, 2))
        self.roof = np.array([world.buildings[i].roof for i, _ in parts], dtype=object)
        self.tone = np.array([world.buildings[i].wall_tone for i, _ in parts]).reshape(n)
        t = world.trees
        self.tx = np.array([v.x for v in t]).reshape(-1)
        self.ty = np.array([v.y for v in t]).reshape(-1)
        self.tr = np.array([v.crown_radius_m for v in t]).reshape(-1)
        self.th = np.array([v.height_m for v in t]).reshape(-1)
        self.tcon = np.array([v.kind == "conifer" for v in t], dtype=bool).reshape(-1)
        self.ttone = np.array([_tone(v.x, v.y) for v in t]).reshape(-1)


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _packed(world: World) -> _Packed:
    p = _PACKED.get(world)
    if p is None:
        p = _PACKED[world] = _Packed(world)
    return p


# Point indices of a part: 0-3 base corners, 4-7 corners at the eaves, 8-9 ridge ends (back,
# front). Walls i -> i+1 (counter-clockwise, outside on the right); wall 1 is the front gable
# end (apex 9), wall 3 the back (apex 8).
_WALLS = np.array([[0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])
_GABLE_TRI = np.array([[5, 6, 9], [5, 6, 9], [7, 4, 8], [7, 4, 8]])  # used for walls 1 and 3
_PLANES = np.array([[4, 5, 9, 8], [6, 7, 8, 9]])  # the -n side, the +n side
_FLAT = [4, 5, 6, 7]


def _draw_3d(img: np.ndarray, world: World, camera: Camera, style: Style, size, fp) -> None:
    """Buildings (walls facing the camera, gable ends, roof planes) and single trees standing
    up, painted far to near."""
    pk = _packed(world)
    lo, hi = fp.min(axis=0) - 40.0, fp.max(axis=0) + 40.0
    bsel = np.flatnonzero(((pk.centre >= lo) & (pk.centre <= hi)).all(axis=1))
    tsel = np.flatnonzero((pk.tx >= lo[0]) & (pk.tx <= hi[0]) & (pk.ty >= lo[1]) & (pk.ty <= hi[1]))
    if not len(bsel) and not len(tsel):
        return
    r = camera.rotation()
    k = camera.intrinsics(size)
    f = k[0, 0]
    pos = camera.position
    sun = style.sun_vector
    lim = 16.0 * max(size)

    def project(p3: np.ndarray):
        pc = (p3 - pos) @ r.T
        z = pc[..., 2]
        ok = (z > 0.5).all(axis=-1)
        zs = np.where(z > 0.5, z, 0.5)
        uv = np.stack([f * pc[..., 0] / zs + k[0, 2], f * pc[..., 1] / zs + k[1, 2]], axis=-1)
        ok &= (np.abs(uv) < lim).all(axis=(-1, -2))
        return np.round(uv * _ONE).astype(np.int32), ok, z

    order_depth, order_kind, order_idx = [], [], []
    if len(bsel):
        n = len(bsel)
        c = pk.corners[bsel]
        p3 = np.zeros((n, 10, 3))
        p3[:, 0:4, :2] = c
        p3[:, 4:8, :2] = c
        p3[:, 4:8, 2] = pk.eaves[bsel, None]
        p3[:, 8:10, :2] = pk.ridge_ends[bsel]
        p3[:, 8:10, 2] = pk.ridge[bsel, None]
        uv, ok, _ = project(p3)
        ctr3 = np.c_[pk.centre[bsel], pk.ridge[bsel] / 2]
        depth = (ctr3 - pos) @ r[2]
        edge = np.roll(c, -1, axis=1) - c
        normal = np.stack([edge[..., 1], -edge[..., 0]], axis=-1)
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
        mid = c + edge / 2
        visible = ((pos[:2] - mid) * normal).sum(-1) > 0
        flat_lit = 0.45 + 0.75 * sun[2]
        wall_shade = (0.45 + 0.75 * np.maximum(0.0, normal @ sun[:2])) / flat_lit
        walls = np.array([style.colour("wall", t, 0.2) for t in pk.tone[bsel]])
        wall_col = np.clip(walls[:, None, :] * wall_shade[..., None] * 0.92, 0, 255)
        roofs = np.array(
            [
                style.colour(f"roof_{rf}", t, 0.18)
                for rf, t in zip(pk.roof[bsel], pk.tone[bsel], strict=True)
            ]
        )
        slope = np.arctan2(pk.ridge[bsel] - pk.eaves[bsel], pk.half_width[bsel])
        nrm = pk.axis_n[bsel]
        plane_shade = []
        for side in (-1.0, 1.0):
            nv = np.c_[side * nrm * np.sin(slope)[:, None], np.cos(slope)]
            plane_shade.append((0.45 + 0.75 * np.maximum(0.0, nv @ sun)) / flat_lit)
        plane_col = np.clip(roofs[:, None, :] * np.stack(plane_shade, axis=1)[..., None], 0, 255)
        # the plane whose centre is farther from the camera is painted first
        pc3 = p3[:, _PLANES].mean(axis=2)
        far_first = np.linalg.norm(pc3[:, 0] - pos, axis=-1) >= np.linalg.norm(
            pc3[:, 1] - pos, axis=-1
        )
        # (cv2 wants C-contiguous int32 point arrays; fancy indexing may not give them)
        quads = np.ascontiguousarray(uv[:, _WALLS])
        tris = np.ascontiguousarray(uv[:, _GABLE_TRI])
        planes = np.ascontiguousarray(uv[:, _PLANES])
        flats = np.ascontiguousarray(uv[:, _FLAT])
        wall_col_l, plane_col_l = wall_col.tolist(), plane_col.tolist()
        roof_l, gable = (roofs * 0.78).tolist(), pk.gable[bsel]
        order_depth.append(depth[ok])
        order_kind.append(np.zeros(int(ok.sum()), np.int8))
        order_idx.append(np.flatnonzero(ok))
    if len(tsel):
        x, y, rr, h = pk.tx[tsel], pk.ty[tsel], pk.tr[tsel], pk.th[tsel]
        top = h - rr
        low = np.maximum(rr * 0.6, h - 1.9 * rr)
        kk = 0.35 * rr
        t3 = np.stack(
            [
                np.c_[x, y, np.zeros_like(x)],
                np.c_[x, y, low],
                np.c_[x, y, top],
                np.c_[x + sun[0] * kk, y + sun[1] * kk, top + sun[2] * kk],
            ],
            axis=1,
        )
        tuv, tok, tz = project(t3)
        rad = f * rr / np.maximum(tz[:, 2], 0.5)
        tok &= rad >= 0.3
        tcol = style.crowns(pk.tcon[tsel], pk.ttone[tsel])
        con = pk.tcon[tsel]
        lower = np.where(con, 0.85, 0.95)
        upper = np.where(con, 0.6, 1.0)
        r_low = np.round(rad * lower * _ONE).astype(int).tolist()
        r_up = np.round(rad * upper * _ONE).astype(int).tolist()
        r_hl = np.round(rad * upper * 0.6 * _ONE).astype(int).tolist()
        trunk_w = np.maximum(1, np.round(f * 0.35 / np.maximum(tz[:, 0], 0.5))).astype(int).tolist()
        c_low, c_up = (tcol * 0.72).tolist(), (tcol * 0.82).tolist()
        c_hl = np.clip(tcol * 1.12, 0, 255).tolist()
        trunk = _c(style.colour("trunk"))
        tpts = tuv.tolist()
        order_depth.append(((t3[:, 2] - pos) @ r[2])[tok])
        order_kind.append(np.ones(int(tok.sum()), np.int8))
        order_idx.append(np.flatnonzero(tok))
    depth_all = np.concatenate(order_depth)
    kind_all = np.concatenate(order_kind)
    idx_all = np.concatenate(order_idx)
    for o in np.argsort(-depth_all, kind="stable"):
        i = int(idx_all[o])
        if kind_all[o] == 0:
            for w in range(4):
                if visible[i, w]:
                    col = wall_col_l[i][w]
                    cv2.fillConvexPoly(img, quads[i, w], col, _AA, _SHIFT)
                    if gable[i] and w % 2:
                        cv2.fillConvexPoly(img, tris[i, w], col, _AA, _SHIFT)
            if gable[i]:
                first = 0 if far_first[i] else 1
                for pl in (first, 1 - first):
                    cv2.fillConvexPoly(img, planes[i, pl], plane_col_l[i][pl], _AA, _SHIFT)
            else:
                cv2.fillConvexPoly(img, flats[i], plane_col_l[i][0], _AA, _SHIFT)
                cv2.polylines(img, [flats[i]], True, roof_l[i], 1, _AA, _SHIFT)
        else:
            p = tpts[i]
            cv2.line(img, p[0], p[1], trunk, trunk_w[i], _AA, _SHIFT)
            cv2.circle(img, p[1], r_low[i], c_low[i], -1, _AA, _SHIFT)
            cv2.circle(img, p[2], r_up[i], c_up[i], -1, _AA, _SHIFT)
            cv2.circle(img, p[3], r_hl[i], c_hl[i], -1, _AA, _SHIFT)


def _tone(x: float, y: float) -> float:
    """A stable 0..1 value from a position (per-object colour variation without state)."""
    v = math.sin(x * 12.9898 + y * 78.233) * 43758.5453
    return v - math.floor(v)
