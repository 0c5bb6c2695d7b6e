"""Shape helpers of the world generator: parts of geometries, orientation, curves, random
points, rectangles placed in areas, and the field-like subdivision of a block."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split

from .features import Rect


def polygon_parts(geom: BaseGeometry, min_area: float = 0.0) -> list[Polygon]:
    """The polygons of any geometry, largest parts only above `min_area`, in a stable order."""
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        items = [geom]
    else:
        items = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
        for g in getattr(geom, "geoms", []):
            if not isinstance(g, Polygon) and hasattr(g, "geoms"):
                items += polygon_parts(g)
    items = [p for p in items if p.area >= min_area]
    items.sort(key=lambda p: (round(p.centroid.y, 3), round(p.centroid.x, 3)))
    return items


def line_parts(geom: BaseGeometry, min_length: float = 0.0) -> list[LineString]:
    if geom.is_empty:
        return []
    if isinstance(geom, LineString):
        items = [geom]
    else:
        items = [g for g in getattr(geom, "geoms", []) if isinstance(g, LineString)]
    return [g for g in items if g.length >= min_length]


def orientation(poly: Polygon) -> tuple[float, float, float]:
    """(angle of the long axis in degrees, length, width) of the minimum rotated rectangle."""
    mrr = poly.minimum_rotated_rectangle
    c = np.asarray(mrr.exterior.coords)[:4]
    e1, e2 = c[1] - c[0], c[2] - c[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    if l1 >= l2:
        return math.degrees(math.atan2(e1[1], e1[0])) % 180.0, l1, l2
    return math.degrees(math.atan2(e2[1], e2[0])) % 180.0, l2, l1


def bezier(p0: np.ndarray, p3: np.ndarray, rng, wiggle: float, step: float = 8.0) -> np.ndarray:
    d = p3 - p0
    length = float(np.hypot(*d))
    n = np.array([-d[1], d[0]]) / max(length, 1e-9)
    p1 = p0 + d / 3 + n * rng.normal(0.0, wiggle * length)
    p2 = p0 + 2 * d / 3 + n * rng.normal(0.0, wiggle * length)
    t = np.linspace(0.0, 1.0, max(4, int(length / step)) + 1)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def blob(cx: float, cy: float, radius: float, rng, n: int = 40) -> Polygon:
    """A lake-like closed shape: a circle with a few low harmonics of radial noise."""
    th = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 4, 5):
        r += rng.normal(0.0, 0.22 / k) * np.cos(k * th + rng.uniform(0, 2 * math.pi))
    r = radius * np.clip(r, 0.45, 1.6)
    return Polygon(np.c_[cx + r * np.cos(th), cy + r * np.sin(th)])


def sample_points(poly: Polygon, n: int, rng, tries: int = 8) -> np.ndarray:
    """Up to n uniform random points inside the polygon (rejection sampling in its bbox)."""
    x0, y0, x1, y1 = poly.bounds
    out = np.zeros((0, 2))
    for _ in range(tries):
        m = max(16, 3 * (n - len(out)))
        if poly.is_empty:
            # No bounds (NaN): numpy 2 refuses to draw in them where 1.x drew NaNs. The same
            # draws keep every later random number, and so every world, as it was.
            rng.random(m), rng.random(m)
            continue
        p = np.c_[rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)]
        out = np.vstack([out, p[shapely.contains_xy(poly, p[:, 0], p[:, 1])]])
        if len(out) >= n:
            break
    return out[:n]


def fits(poly: Polygon, length: float, width: float) -> bool:
    _, long_side, short_side = orientation(poly)
    return long_side >= length and short_side >= width and poly.area > 1.3 * length * width


def place_rect(
    area: BaseGeometry,
    length: float,
    width: float,
    angle: float,
    rng,
    taken: BaseGeometry,
    pad: float = 0.0,
    tries: int = 40,
) -> Rect | None:
    """A rect of this size and angle (or turned by 90 degrees) inside `area`, clear of `taken`."""
    if area.is_empty:
        return None
    pts = sample_points(area, tries, rng) if isinstance(area, Polygon) else np.zeros((0, 2))
    if not isinstance(area, Polygon):
        polys = polygon_parts(area)
        if not polys:
            return None
        pts = np.vstack([sample_points(p, tries // len(polys) + 1, rng) for p in polys])
    for i, (x, y) in enumerate(pts):
        ang = angle + (90.0 if i % 2 else 0.0)
        rect = Rect(float(x), float(y), float(length), float(width), float(ang))
        poly = rect.polygon()
        check = poly.buffer(pad, join_style="mitre") if pad else poly
        if area.contains(check) and not poly.intersects(taken):
            return rect
    return None


def subdivide(poly: Polygon, target: float, rng) -> tuple[list[Polygon], list[BaseGeometry]]:
    """Split a polygon into pieces of about `target` m2 by cuts across its long axis (the way
    fields are laid out). Returns (pieces, cut lines inside the polygon)."""
    stack, out, cuts = [poly], [], []
    while stack:
        p = stack.pop()
        if p.area <= target * 1.4:
            out.append(p)
            continue
        ang, length, _ = orientation(p)
        a = math.radians(ang)
        c = np.asarray(p.minimum_rotated_rectangle.centroid.coords[0])
        along = np.array([math.cos(a), math.sin(a)])
        at = c + along * (rng.uniform(0.35, 0.65) - 0.5) * length
        cut_ang = a + math.pi / 2 + math.radians(rng.normal(0.0, 5.0))
        d = np.array([math.cos(cut_ang), math.sin(cut_ang)]) * (length * 2 + 100.0)
        blade = LineString([at - d, at + d])
        pieces = polygon_parts(split(p, blade), 1.0)
        if len(pieces) < 2:
            out.append(p)
            continue
        cuts.append(blade.intersection(p))
        stack.extend(pieces)
    out.sort(key=lambda q: (round(q.centroid.y, 3), round(q.centroid.x, 3)))
    return out, cuts
