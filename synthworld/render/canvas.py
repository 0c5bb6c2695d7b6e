"""A window of a world at some ground resolution, with world -> pixel drawing helpers (cv2,
sub-pixel), and the world-fixed noise every render of a world samples (so windows agree)."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from shapely.geometry import Polygon

from ..world import World

SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
ONE = 1 << SHIFT
AA = cv2.LINE_AA


class Canvas:
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
        out = np.stack([px, py], axis=-1) * ONE
        return np.clip(np.round(out), -(2**28), 2**28).astype(np.int32)

    def px(self, metres: float) -> float:
        return metres / self.g

    def fill(self, geom, colour, target=None, aa: bool = True) -> None:
        rings = []
        for p in polygons_of(geom):
            rings.append(self.pix(np.asarray(p.exterior.coords)))
            rings += [self.pix(np.asarray(r.coords)) for r in p.interiors]
        if rings:
            img = self.img if target is None else target
            cv2.fillPoly(img, rings, cv_colour(colour), AA if aa else cv2.LINE_8, SHIFT)

    def fill_coords(self, coords: np.ndarray, colour, target=None) -> None:
        img = self.img if target is None else target
        cv2.fillPoly(img, [self.pix(coords)], cv_colour(colour), AA, SHIFT)

    def line(self, coords: np.ndarray, colour, width_m: float, target=None, closed=False) -> None:
        img = self.img if target is None else target
        t = max(1, round(width_m / self.g))
        cv2.polylines(img, [self.pix(coords)], closed, cv_colour(colour), t, AA, SHIFT)

    def thin_line(self, coords: np.ndarray, width_m: float, closed: bool = False) -> None:
        """A white marking: thinner than a pixel becomes a faint full pixel."""
        wp = width_m / self.g
        alpha = 255 if wp >= 1 else max(20, round(255 * wp))
        t = max(1, round(wp))
        cv2.polylines(self.thin, [self.pix(coords)], closed, alpha, t, AA, SHIFT)

    def circles(self, x, y, r, colours, target=None) -> None:
        img = self.img if target is None else target
        c = self.pix(np.stack([x, y], axis=-1))
        rr = np.maximum(np.round(np.asarray(r) / self.g * ONE), ONE // 2).astype(np.int64)
        single = np.ndim(colours) <= 1
        for i in range(len(c)):
            col = colours if single else colours[i]
            cv2.circle(img, (int(c[i, 0]), int(c[i, 1])), int(rr[i]), cv_colour(col), -1, AA, SHIFT)

    def xy_grids(self) -> tuple[np.ndarray, np.ndarray]:
        """World x of each column and y of each row (pixel centres)."""
        xs = self.x0 + (np.arange(self.w) + 0.5) * self.g
        ys = self.y1 - (np.arange(self.h) + 0.5) * self.g
        return xs, ys


def cv_colour(colour) -> tuple:
    if np.ndim(colour) == 0:
        return (float(colour),)
    return tuple(float(v) for v in colour)


def polygons_of(geom) -> list[Polygon]:
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


def sample_noise(world: World, cv: Canvas) -> tuple[np.ndarray, np.ndarray]:
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
