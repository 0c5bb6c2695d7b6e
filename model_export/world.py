"""A procedural landscape as a vector scene: the synthetic world the demo model is trained on.

No real drone photos or satellite images are available to this project, so it makes its own
place. A `World` is a square of European countryside with villages (about one per km2), placed
at a real location in a real projected CRS: per seed a lon/lat in Europe (4..16 E, 44..54 N),
its UTM zone (WGS 84, EPSG:326xx) and a lower-left corner snapped to whole metres. Every
coordinate in the scene is in that CRS, in metres; angles are degrees counter-clockwise from
east (the x axis) unless a name says otherwise.

The scene model (all areas are shapely Polygons, all lines LineStrings):

- `roads` (main roads with markings, village streets, farm tracks, park paths; curved, meeting at
  junctions), `roundabouts`, one meandering `rivers` entry, `lakes` (ponds and lakes).
- `buildings`: one or more rectangular `BuildingPart`s (L-shapes, a church with its tower), each
  with eaves and ridge height (ridge above eaves = a gable roof, drawn two-tone), a roof colour
  class and a use (house, farm, industrial, civic).
- `fields`: crop type, row direction, stripe spacing and tramline spacing, colour tone.
- `forests` (the canopy's crowns are derived from the forest's own seed, see `canopy`), single
  `trees` (position, crown radius, height), `hedges` (field boundaries, garden hedges).
- `parkings` (stall rows; `cars` on some stalls), `sports` (football pitches, tennis courts),
  `surfaces` (lawns, yards, paved areas, meadows).

The layout is dense on purpose: the road grid is ~250 m, fields are 1-3 ha with visible edges,
hedges and tramlines, houses stand in rows with gardens; almost every 100 m square holds a road,
a building or a field edge, because retrieval is trained on squares of that size.

`World.variant(seed)` is a second version of the same layout (a later flight): about 30 % of the
fields re-cropped, single trees moved, cars re-parked, some lawns re-coloured. Drone photos are
rendered from a variant and satellite tiles from the world itself, so a model must learn the
structure, not the pixels.

Determinism rule: a world is a pure function of (seed, size). All randomness comes from
`numpy.random.default_rng` seeded with `[seed, step, ...]` (one stream per generation step and
per block, so a change in one step does not reshuffle the others); no global random state, no
clock, no dependence on set or hash order (candidate points are sorted before sampling).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.ops import split

CROPS = ("wheat", "barley", "maize", "rapeseed", "grassland", "potato", "sunflower", "ploughed")
_CROP_WEIGHTS = (0.24, 0.12, 0.17, 0.10, 0.15, 0.08, 0.05, 0.09)
# Stylised row spacing (m): real drill rows are finer than any pixel; these are what reads as
# stripes from the air (rows, ridges, mowing swaths, furrows).
_CROP_SPACING = {
    "wheat": (2.5, 4.0),
    "barley": (2.5, 4.0),
    "maize": (3.0, 4.5),
    "rapeseed": (3.0, 5.0),
    "grassland": (5.0, 9.0),
    "potato": (2.5, 3.5),
    "sunflower": (3.0, 4.5),
    "ploughed": (2.0, 3.0),
}
_TRAMLINE_CROPS = ("wheat", "barley", "rapeseed")
ROOFS = ("red", "brown", "grey", "dark", "white")
CAR_COLOURS = ("white", "black", "grey", "silver", "blue", "red", "darkblue", "green", "beige")
_CAR_WEIGHTS = (0.24, 0.18, 0.17, 0.14, 0.08, 0.07, 0.06, 0.03, 0.03)
ROAD_WIDTH = {"main": (7.0, 8.5), "street": (5.5, 6.5), "track": (3.0, 4.0), "path": (2.0, 2.8)}
_VERGE = {"main": 2.5, "street": 1.5, "track": 0.8, "path": 0.5}
STALL_WIDTH, STALL_DEPTH, AISLE = 2.5, 5.0, 6.0
_AREA_LIMIT = {"park": 35000.0, "sports": 30000.0, "industrial": 45000.0, "green": 5000.0}
FOOTBALL = (105.0, 68.0)
TENNIS_COURT = (36.6, 18.3)  # the paved area of one court; the lines are 23.77 x 10.97


# ----------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Rect:
    """An oriented rectangle: centre, length along `angle_deg`, width across it."""

    cx: float
    cy: float
    length: float
    width: float
    angle_deg: float

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit vector along the length, unit vector across it, to its left)."""
        t = math.radians(self.angle_deg)
        return np.array([math.cos(t), math.sin(t)]), np.array([-math.sin(t), math.cos(t)])

    def corners(self) -> np.ndarray:
        """(4, 2), counter-clockwise: back-right, front-right, front-left, back-left."""
        a, n = self.axes()
        c = np.array([self.cx, self.cy])
        hl, hw = a * self.length / 2, n * self.width / 2
        return np.array([c - hl - hw, c + hl - hw, c + hl + hw, c - hl + hw])

    def polygon(self) -> Polygon:
        return Polygon(self.corners())

    def local(self, u: float, v: float) -> np.ndarray:
        """The point u metres along and v metres across from the centre."""
        a, n = self.axes()
        return np.array([self.cx, self.cy]) + a * u + n * v


@dataclass(frozen=True)
class Road:
    line: LineString
    width_m: float
    kind: str  # main | street | track | path


@dataclass(frozen=True)
class Roundabout:
    x: float
    y: float
    radius_m: float  # of the carriageway's centre line
    width_m: float


@dataclass(frozen=True)
class River:
    line: LineString
    width_m: float


@dataclass(frozen=True)
class Lake:
    polygon: Polygon


@dataclass(frozen=True)
class Field:
    polygon: Polygon
    crop: str
    row_angle_deg: float  # direction of the rows (0..180)
    spacing_m: float  # distance between stripes
    tramline_m: float  # distance between tractor tramlines, 0 = none
    tone: float  # 0..1, colour variation within the crop's colour


@dataclass(frozen=True)
class Forest:
    polygon: Polygon
    kind: str  # deciduous | conifer | mixed
    seed: int  # the crowns (`World.canopy`) come from this


@dataclass(frozen=True)
class Tree:
    x: float
    y: float
    crown_radius_m: float
    height_m: float
    kind: str  # deciduous | conifer


@dataclass(frozen=True)
class Hedge:
    line: LineString
    width_m: float


@dataclass(frozen=True)
class BuildingPart:
    rect: Rect
    eaves_m: float
    ridge_m: float  # == eaves_m for a flat roof; the ridge runs along the rect's length

    @property
    def gable(self) -> bool:
        return self.ridge_m > self.eaves_m + 0.05


@dataclass(frozen=True)
class Building:
    parts: tuple[BuildingPart, ...]
    roof: str  # one of ROOFS
    use: str  # house | farm | industrial | civic
    wall_tone: float

    @property
    def height_m(self) -> float:
        return max(p.ridge_m for p in self.parts)

    @property
    def gable(self) -> bool:
        return any(p.gable for p in self.parts)

    @cached_property
    def footprint(self) -> Polygon:
        if len(self.parts) == 1:
            return self.parts[0].rect.polygon()
        u = shapely.union_all([p.rect.polygon() for p in self.parts])
        return u if isinstance(u, Polygon) else max(u.geoms, key=lambda g: g.area)


@dataclass(frozen=True)
class Car:
    x: float
    y: float
    angle_deg: float
    length_m: float
    width_m: float
    colour: str

    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.length_m, self.width_m, self.angle_deg)


@dataclass(frozen=True)
class Parking:
    """Stall rows across the rect's width: 2 rows (16 m wide) or 4 rows (32 m wide)."""

    rect: Rect
    rows: int
    cars: tuple[Car, ...]

    def stalls(self) -> np.ndarray:
        """(n, 3): stall centre x, y and the stall's axis angle (nose direction, degrees)."""
        k = int(self.rect.length // STALL_WIDTH)
        us = (np.arange(k) - (k - 1) / 2) * STALL_WIDTH
        out = []
        w = self.rect.width
        for row in range(self.rows):
            pair, side = divmod(row, 2)
            v0 = -w / 2 + pair * (2 * STALL_DEPTH + AISLE)  # this pair's outer edge
            v = v0 + STALL_DEPTH / 2 if side == 0 else v0 + STALL_DEPTH * 1.5 + AISLE
            ang = self.rect.angle_deg + (90.0 if side == 0 else -90.0)
            for u in us:
                p = self.rect.local(u, v)
                out.append((p[0], p[1], ang))
        return np.array(out, dtype=float).reshape(-1, 3)

    def lines(self) -> list[np.ndarray]:
        """The white stall separators, each a (2, 2) segment."""
        k = int(self.rect.length // STALL_WIDTH)
        w = self.rect.width
        segs = []
        for pair in range(self.rows // 2):
            v0 = -w / 2 + pair * (2 * STALL_DEPTH + AISLE)
            for va in (v0, v0 + STALL_DEPTH + AISLE):
                for i in range(k + 1):
                    u = (i - k / 2) * STALL_WIDTH
                    a, b = self.rect.local(u, va), self.rect.local(u, va + STALL_DEPTH)
                    segs.append(np.array([a, b]))
        return segs


@dataclass(frozen=True)
class SportsGround:
    kind: str  # football | tennis
    rect: Rect  # football: the pitch; tennis: all courts side by side
    courts: int  # tennis courts (1 for football)
    surface: str  # football: grass; tennis: clay | hard-green | hard-blue


@dataclass(frozen=True)
class Surface:
    polygon: Polygon
    kind: str  # lawn | meadow | paved | yard | plaza | gravel
    tone: float


LAYERS = (
    "roads",
    "roundabouts",
    "rivers",
    "lakes",
    "fields",
    "forests",
    "trees",
    "hedges",
    "buildings",
    "surfaces",
    "parkings",
    "sports",
)


@dataclass(frozen=True)
class Canopy:
    """Crowns of forests and hedges as arrays (fast to draw): x, y, radius, height, conifer,
    tone. Derived from the scene, never stored in it."""

    x: np.ndarray
    y: np.ndarray
    r: np.ndarray
    h: np.ndarray
    conifer: np.ndarray
    tone: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask: np.ndarray) -> Canopy:
        return Canopy(*(a[mask] for a in (self.x, self.y, self.r, self.h, self.conifer, self.tone)))


# --------------------------------------------------------------------------------------- world


@dataclass(frozen=True, eq=False)
class World:
    seed: int
    size_m: float
    epsg: int
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the UTM CRS
    centre_lonlat: tuple[float, float]
    ground_elevation_m: float  # the (flat) ground's height above sea level
    roads: tuple[Road, ...]
    roundabouts: tuple[Roundabout, ...]
    rivers: tuple[River, ...]
    lakes: tuple[Lake, ...]
    fields: tuple[Field, ...]
    forests: tuple[Forest, ...]
    trees: tuple[Tree, ...]
    hedges: tuple[Hedge, ...]
    buildings: tuple[Building, ...]
    surfaces: tuple[Surface, ...]
    parkings: tuple[Parking, ...]
    sports: tuple[SportsGround, ...]
    variant_seed: int | None = None  # None: the world itself; else `variant(variant_seed)`

    @classmethod
    def generate(cls, seed: int, size_m: float) -> World:
        """The world for `seed`: a `size_m` x `size_m` square (size_m from 200 m to 20 km)."""
        if not 200.0 <= size_m <= 20000.0:
            raise ValueError(f"size_m={size_m}: use 200..20000 m")
        return _Generator(int(seed), float(size_m)).build()

    def variant(self, seed: int) -> World:
        """The same layout at another time: ~30 % of the fields re-cropped (new crop, tone and
        sometimes row direction), single trees re-placed, cars re-parked, ~30 % of the lawns
        re-coloured. Roads, buildings, water, forests and hedges stay."""
        rng = np.random.default_rng([self.seed, 9001, int(seed)])
        fields = []
        for f in self.fields:
            if rng.random() < 0.3:
                crop = str(rng.choice([c for c in CROPS if c != f.crop]))
                angle = f.row_angle_deg + (90.0 if rng.random() < 0.4 else 0.0)
                f = _make_field(f.polygon, crop, angle % 180.0, rng)
            fields.append(f)
        # Trees: ~12 % felled, ~10 % planted near others, the rest moved a few metres (a
        # move that lands on a road, building or water is retried, then the tree stays).
        keep = [t for t in self.trees if rng.random() >= 0.12]
        extra = rng.choice(len(self.trees), size=len(self.trees) // 10) if self.trees else []
        for i in extra:
            t = self.trees[int(i)]
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(6.0, 15.0)
            keep.append(replace(t, x=t.x + dist * math.cos(ang), y=t.y + dist * math.sin(ang)))
        keep = _drop_blocked_trees(keep, self._tree_obstacles)
        trees = list(keep)
        todo = list(range(len(trees)))
        for _ in range(3):
            if not todo:
                break
            moved = []
            for i in todo:
                t = keep[i]
                dx, dy = rng.normal(0.0, 3.0, 2)
                r = t.crown_radius_m * rng.uniform(0.85, 1.15)
                moved.append(replace(t, x=t.x + dx, y=t.y + dy, crown_radius_m=r))
            ok = _blocked_mask(moved, self._tree_obstacles)
            for i, t, bad in zip(todo, moved, ok, strict=True):
                if not bad:
                    trees[i] = t
            todo = [i for i, bad in zip(todo, ok, strict=True) if bad]
        parkings = tuple(
            replace(p, cars=_park_cars(p, rng, rng.uniform(0.25, 0.95))) for p in self.parkings
        )
        surfaces = tuple(
            replace(s, tone=float(rng.random()))
            if s.kind in ("lawn", "meadow") and rng.random() < 0.3
            else s
            for s in self.surfaces
        )
        return replace(
            self,
            fields=tuple(fields),
            trees=tuple(trees),
            parkings=parkings,
            surfaces=surfaces,
            variant_seed=int(seed),
        )

    # ---- geometry helpers

    @property
    def box(self) -> Polygon:
        return box(*self.bounds)

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    def to_lonlat(self, x, y):
        """UTM -> WGS 84 (lon, lat); scalars or arrays."""
        return _transformer(self.epsg, inverse=True).transform(x, y)

    def from_lonlat(self, lon, lat):
        return _transformer(self.epsg, inverse=False).transform(lon, lat)

    @cached_property
    def cars(self) -> tuple[Car, ...]:
        return tuple(c for p in self.parkings for c in p.cars)

    @cached_property
    def canopy(self) -> Canopy:
        """Forest crowns (jittered grid, from each forest's seed) and hedge crowns."""
        parts = []
        for f in self.forests:
            rng = np.random.default_rng([self.seed, 5, f.seed])
            spacing = {"deciduous": 4.4, "conifer": 3.6, "mixed": 4.0}[f.kind]
            x0, y0, x1, y1 = f.polygon.bounds
            gx, gy = np.meshgrid(np.arange(x0, x1, spacing), np.arange(y0, y1, spacing))
            x = gx.ravel() + rng.uniform(-0.45, 0.45, gx.size) * spacing
            y = gy.ravel() + rng.uniform(-0.45, 0.45, gx.size) * spacing
            inside = shapely.contains_xy(f.polygon, x, y)
            x, y = x[inside], y[inside]
            n = len(x)
            if f.kind == "mixed":
                con = rng.random(n) < 0.5
            else:
                con = np.full(n, f.kind == "conifer")
            r = np.where(con, rng.uniform(1.7, 2.6, n), rng.uniform(2.3, 3.6, n))
            h = rng.uniform(14.0, 27.0, n)
            parts.append((x, y, r, h, con, rng.random(n)))
        for i, hd in enumerate(self.hedges):
            rng = np.random.default_rng([self.seed, 6, i])
            length = hd.line.length
            d = np.arange(rng.uniform(0, 1.5), length, rng.uniform(1.6, 2.2))
            if len(d) == 0:
                continue
            pts = shapely.get_coordinates(shapely.line_interpolate_point(hd.line, d))
            n = len(pts)
            pts = pts + rng.normal(0.0, hd.width_m * 0.15, (n, 2))
            r = hd.width_m / 2 * rng.uniform(0.85, 1.35, n)
            parts.append(
                (
                    pts[:, 0],
                    pts[:, 1],
                    r,
                    rng.uniform(2.0, 4.0, n),
                    np.zeros(n, bool),
                    rng.random(n),
                )
            )
        if not parts:
            e = np.zeros(0)
            return Canopy(e, e, e, e, e.astype(bool), e)
        cols = list(zip(*parts, strict=True))
        return Canopy(*(np.concatenate(c) for c in cols))

    def layer_bounds(self, layer: str) -> np.ndarray:
        """(n, 4) xmin, ymin, xmax, ymax of each feature of a layer (for window queries)."""
        return self._bounds[layer]

    @cached_property
    def _bounds(self) -> dict[str, np.ndarray]:
        out = {}
        for layer in LAYERS:
            geoms = [feature_geometry(f) for f in getattr(self, layer)]
            out[layer] = shapely.bounds(np.array(geoms, dtype=object)).reshape(-1, 4)
        return out

    def query(self, layer: str, bbox: Sequence[float]) -> list:
        """The features of `layer` whose bounding box meets `bbox` (xmin, ymin, xmax, ymax)."""
        b = self.layer_bounds(layer)
        if len(b) == 0:
            return []
        hit = (
            (b[:, 0] <= bbox[2])
            & (b[:, 2] >= bbox[0])
            & (b[:, 1] <= bbox[3])
            & (b[:, 3] >= bbox[1])
        )
        items = getattr(self, layer)
        return [items[i] for i in np.flatnonzero(hit)]

    @cached_property
    def _tree_obstacles(self) -> shapely.STRtree:
        return _obstacle_tree(self)


def _obstacle_tree(s) -> shapely.STRtree:
    """Where no tree may stand: buildings, roads, water, car parks, pitches, roundabouts (of a
    World or of the generator, which has the same attributes)."""
    geoms = [b.footprint for b in s.buildings]
    geoms += [r.line.buffer(r.width_m / 2 + 0.5, quad_segs=2) for r in s.roads]
    geoms += [lk.polygon for lk in s.lakes]
    geoms += [r.line.buffer(r.width_m / 2 + 1.0, quad_segs=2) for r in s.rivers]
    geoms += [p.rect.polygon() for p in s.parkings]
    geoms += [g.rect.polygon().buffer(4.0, quad_segs=2) for g in s.sports]
    geoms += [Point(r.x, r.y).buffer(r.radius_m + r.width_m / 2) for r in s.roundabouts]
    return shapely.STRtree(geoms)


def feature_geometry(f) -> BaseGeometry:
    """The feature's geometry as written to the GeoPackage (areas, lines or points)."""
    if isinstance(f, Road | River | Hedge):
        return f.line
    if isinstance(f, Lake | Field | Forest | Surface):
        return f.polygon
    if isinstance(f, Tree):
        return Point(f.x, f.y)
    if isinstance(f, Building):
        return f.footprint
    if isinstance(f, Parking | SportsGround):
        return f.rect.polygon()
    if isinstance(f, Car):
        return f.rect().polygon()
    if isinstance(f, Roundabout):
        outer = Point(f.x, f.y).buffer(f.radius_m + f.width_m / 2, quad_segs=16)
        return outer.difference(Point(f.x, f.y).buffer(f.radius_m - f.width_m / 2, quad_segs=16))
    raise TypeError(type(f).__name__)


_TRANSFORMERS: dict[tuple[int, bool], Transformer] = {}


def _transformer(epsg: int, inverse: bool) -> Transformer:
    key = (epsg, inverse)
    if key not in _TRANSFORMERS:
        src, dst = (epsg, 4326) if inverse else (4326, epsg)
        _TRANSFORMERS[key] = Transformer.from_crs(src, dst, always_xy=True)
    return _TRANSFORMERS[key]


def utm_epsg(lon: float, lat: float) -> int:
    """The WGS 84 UTM zone of a point (no Norway/Svalbard exceptions: they lie north of 56 N)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


# ---------------------------------------------------------------------------- small helpers


def _polys(geom: BaseGeometry, min_area: float = 0.0) -> list[Polygon]:
    """The polygons of any geometry, largest parts only above `min_area`, in a stable order."""
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        items = [geom]
    else:
        items = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
        for g in getattr(geom, "geoms", []):
            if not isinstance(g, Polygon) and hasattr(g, "geoms"):
                items += _polys(g)
    items = [p for p in items if p.area >= min_area]
    items.sort(key=lambda p: (round(p.centroid.y, 3), round(p.centroid.x, 3)))
    return items


def _lines(geom: BaseGeometry, min_length: float = 0.0) -> list[LineString]:
    if geom.is_empty:
        return []
    if isinstance(geom, LineString):
        items = [geom]
    else:
        items = [g for g in getattr(geom, "geoms", []) if isinstance(g, LineString)]
    return [g for g in items if g.length >= min_length]


def _orientation(poly: Polygon) -> tuple[float, float, float]:
    """(angle of the long axis in degrees, length, width) of the minimum rotated rectangle."""
    mrr = poly.minimum_rotated_rectangle
    c = np.asarray(mrr.exterior.coords)[:4]
    e1, e2 = c[1] - c[0], c[2] - c[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    if l1 >= l2:
        return math.degrees(math.atan2(e1[1], e1[0])) % 180.0, l1, l2
    return math.degrees(math.atan2(e2[1], e2[0])) % 180.0, l2, l1


def _bezier(p0: np.ndarray, p3: np.ndarray, rng, wiggle: float, step: float = 8.0) -> np.ndarray:
    d = p3 - p0
    length = float(np.hypot(*d))
    n = np.array([-d[1], d[0]]) / max(length, 1e-9)
    p1 = p0 + d / 3 + n * rng.normal(0.0, wiggle * length)
    p2 = p0 + 2 * d / 3 + n * rng.normal(0.0, wiggle * length)
    t = np.linspace(0.0, 1.0, max(4, int(length / step)) + 1)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _blob(cx: float, cy: float, radius: float, rng, n: int = 40) -> Polygon:
    """A lake-like closed shape: a circle with a few low harmonics of radial noise."""
    th = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 4, 5):
        r += rng.normal(0.0, 0.22 / k) * np.cos(k * th + rng.uniform(0, 2 * math.pi))
    r = radius * np.clip(r, 0.45, 1.6)
    return Polygon(np.c_[cx + r * np.cos(th), cy + r * np.sin(th)])


def _sample_points(poly: Polygon, n: int, rng, tries: int = 8) -> np.ndarray:
    """Up to n uniform random points inside the polygon (rejection sampling in its bbox)."""
    x0, y0, x1, y1 = poly.bounds
    out = np.zeros((0, 2))
    for _ in range(tries):
        m = max(16, 3 * (n - len(out)))
        p = np.c_[rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)]
        out = np.vstack([out, p[shapely.contains_xy(poly, p[:, 0], p[:, 1])]])
        if len(out) >= n:
            break
    return out[:n]


def _make_field(poly: Polygon, crop: str, angle: float, rng) -> Field:
    lo, hi = _CROP_SPACING[crop]
    tram = float(rng.uniform(18.0, 24.0)) if crop in _TRAMLINE_CROPS else 0.0
    return Field(
        poly, crop, float(angle % 180.0), float(rng.uniform(lo, hi)), tram, float(rng.random())
    )


def _park_cars(p: Parking, rng, occupancy: float) -> tuple[Car, ...]:
    cars = []
    for x, y, ang in p.stalls():
        if rng.random() >= occupancy:
            continue
        length = rng.uniform(4.0, 5.0)
        a = ang + rng.normal(0.0, 2.5) + (180.0 if rng.random() < 0.3 else 0.0)
        dx, dy = rng.normal(0.0, 0.15, 2)
        colour = str(rng.choice(CAR_COLOURS, p=_CAR_WEIGHTS))
        cars.append(
            Car(
                float(x + dx),
                float(y + dy),
                float(a % 360.0),
                float(length),
                float(rng.uniform(1.7, 1.9)),
                colour,
            )
        )
    return tuple(cars)


def _blocked_mask(trees: list[Tree], tree: shapely.STRtree) -> np.ndarray:
    """True for trees whose trunk area meets a building, road, water or pitch."""
    blocked = np.zeros(len(trees), bool)
    if trees:
        pts = shapely.points([(t.x, t.y) for t in trees])
        radii = np.array([max(0.8, 0.4 * t.crown_radius_m) for t in trees])
        hits = tree.query(shapely.buffer(pts, radii, quad_segs=2), predicate="intersects")
        blocked[hits[0]] = True
    return blocked


def _drop_blocked_trees(trees: list[Tree], tree: shapely.STRtree) -> list[Tree]:
    blocked = _blocked_mask(trees, tree)
    return [t for t, b in zip(trees, blocked, strict=True) if not b]


# ---------------------------------------------------------------------------------- generator


class _Generator:
    def __init__(self, seed: int, size_m: float):
        self.seed = seed
        self.size = size_m
        rng = self.rng(0)
        lon, lat = float(rng.uniform(4.0, 16.0)), float(rng.uniform(44.0, 54.0))
        self.epsg = utm_epsg(lon, lat)
        CRS.from_epsg(self.epsg)  # a real CRS pyproj knows
        x, y = _transformer(self.epsg, inverse=False).transform(lon, lat)
        self.x0, self.y0 = float(math.floor(x - size_m / 2)), float(math.floor(y - size_m / 2))
        self.x1, self.y1 = self.x0 + size_m, self.y0 + size_m
        self.elevation = round(float(rng.uniform(40.0, 650.0)), 1)
        self.box = box(self.x0, self.y0, self.x1, self.y1)
        self.roads: list[Road] = []
        self.roundabouts: list[Roundabout] = []
        self.rivers: list[River] = []
        self.lakes: list[Lake] = []
        self.fields: list[Field] = []
        self.forests: list[Forest] = []
        self.trees: list[Tree] = []
        self.hedges: list[Hedge] = []
        self.buildings: list[Building] = []
        self.surfaces: list[Surface] = []
        self.parkings: list[Parking] = []
        self.sports: list[SportsGround] = []

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    # ---- layout

    def build(self) -> World:
        self._centres()
        self._main_roads()
        self._river()
        self._grid()
        self._roundabouts()
        self._blocks()
        trees = _drop_blocked_trees(self.trees, _obstacle_tree(self))
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        lon, lat = _transformer(self.epsg, inverse=True).transform(cx, cy)
        return World(
            seed=self.seed,
            size_m=self.size,
            epsg=self.epsg,
            bounds=(self.x0, self.y0, self.x1, self.y1),
            centre_lonlat=(float(lon), float(lat)),
            ground_elevation_m=self.elevation,
            roads=tuple(self.roads),
            roundabouts=tuple(self.roundabouts),
            rivers=tuple(self.rivers),
            lakes=tuple(self.lakes),
            fields=tuple(self.fields),
            forests=tuple(self.forests),
            trees=tuple(trees),
            hedges=tuple(self.hedges),
            buildings=tuple(self.buildings),
            surfaces=tuple(self.surfaces),
            parkings=tuple(self.parkings),
            sports=tuple(self.sports),
        )

    def _centres(self) -> None:
        rng = self.rng(1)
        area_km2 = (self.size / 1000.0) ** 2
        n = max(1, round(area_km2 * 1.0))
        m = 0.15 * self.size
        self.centres = np.c_[
            rng.uniform(self.x0 + m, self.x1 - m, n), rng.uniform(self.y0 + m, self.y1 - m, n)
        ]
        self.radii = rng.uniform(230.0, 360.0, n)

    def urban(self, x, y) -> np.ndarray:
        """0..1, how village-like a place is (1 at a village centre)."""
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        d2 = (x[:, None] - self.centres[None, :, 0]) ** 2 + (
            y[:, None] - self.centres[None, :, 1]
        ) ** 2
        return np.exp(-d2 / self.radii[None, :] ** 2).max(axis=1)

    def _meander(self, p: np.ndarray, theta: float, rng, amp: tuple, wavelength: tuple) -> list:
        half = self.size * 1.5
        t = np.arange(-half, half + 1e-9, 6.0)
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        off = np.zeros_like(t)
        for _ in range(2):
            a, lam, ph = rng.uniform(*amp), rng.uniform(*wavelength), rng.uniform(0, 2 * math.pi)
            off += a * (np.sin(2 * math.pi * t / lam + ph) - math.sin(ph))
        pts = p[None, :] + t[:, None] * d[None, :] + off[:, None] * n[None, :]
        return _lines(LineString(pts).intersection(self.box.buffer(40.0)), 30.0)

    def _main_roads(self) -> None:
        rng = self.rng(2)
        theta = rng.uniform(0, math.pi)
        self.grid_angle = theta
        self.mains: list[LineString] = []
        n = 2 if self.size >= 800 or rng.random() < 0.5 else 1
        for i in range(n):
            c = self.centres[min(i, len(self.centres) - 1)]
            ang = theta if i == 0 else theta + math.radians(rng.uniform(55, 125))
            for line in self._meander(c, ang, rng, (15.0, 70.0), (500.0, 1400.0)):
                self.mains.append(line)
                self.roads.append(Road(line, float(rng.uniform(*ROAD_WIDTH["main"])), "main"))

    def _river(self) -> None:
        rng = self.rng(3)
        # Through a point away from the first village, roughly across the main road.
        c0 = self.centres[0]
        lo, hi = 0.2 * self.size, 0.8 * self.size
        for _ in range(20):
            p = np.array([self.x0 + rng.uniform(lo, hi), self.y0 + rng.uniform(lo, hi)])
            if np.hypot(*(p - c0)) > 0.25 * self.size:
                break
        ang = self.grid_angle + math.radians(rng.uniform(60, 120))
        width = float(rng.uniform(10.0, 20.0))
        lines = self._meander(p, ang, rng, (30.0, 90.0), (300.0, 700.0))
        for line in lines[:1]:
            self.rivers.append(River(line, width))
        self.river_zone = (
            shapely.union_all([r.line.buffer(r.width_m / 2 + 25.0) for r in self.rivers])
            if self.rivers
            else Polygon()
        )

    def _grid(self) -> None:
        rng = self.rng(4)
        s = rng.uniform(220.0, 280.0)
        e1 = np.array([math.cos(self.grid_angle), math.sin(self.grid_angle)])
        e2 = np.array([-e1[1], e1[0]])
        o = np.array([(self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2])
        o = o + e1 * rng.uniform(0, s) + e2 * rng.uniform(0, s)
        k = math.ceil(self.size * 0.75 / s) + 2
        idx = np.arange(-k, k + 1)
        jit = rng.normal(0.0, 0.12 * s, (len(idx), len(idx), 2)).clip(-0.25 * s, 0.25 * s)
        nodes = (
            o[None, None, :]
            + (idx[:, None, None] * s + jit[..., :1]) * e1[None, None, :]
            + (idx[None, :, None] * s + jit[..., 1:]) * e2[None, None, :]
        )
        keep_box = self.box.buffer(30.0)
        main_zone = shapely.union_all([m.buffer(25.0) for m in self.mains]) if self.mains else None
        edges = []
        nn = len(idx)
        for i in range(nn):
            for j in range(nn):
                for di, dj in ((1, 0), (0, 1)):
                    if i + di < nn and j + dj < nn:
                        edges.append((nodes[i, j], nodes[i + di, j + dj]))
        # Village streets halve the grid cells near a centre (some end in the block: cul-de-sacs).
        for i in range(nn - 1):
            for j in range(nn - 1):
                c = (nodes[i, j] + nodes[i + 1, j + 1]) / 2
                if self.urban(*c)[0] > 0.45 and rng.random() < 0.8:
                    a = (nodes[i, j] + nodes[i + 1, j]) / 2
                    b = (nodes[i, j + 1] + nodes[i + 1, j + 1]) / 2
                    edges.append((a, b))
        for a, b in edges:
            mid = (a + b) / 2
            u = self.urban(*mid)[0]
            kind = "street" if u > 0.25 else "track"
            keep = rng.random() < (0.93 if kind == "street" else 0.7)
            pts = _bezier(a, b, rng, 0.05 if kind == "street" else 0.09)
            width = float(rng.uniform(*ROAD_WIDTH[kind]))
            if not keep:
                continue
            line = LineString(pts)
            if not line.intersects(keep_box):
                continue
            # Drop an edge that runs along the main road or the river (a crossing is fine).
            along = max(0.4 * line.length, 110.0)
            if main_zone is not None and line.intersection(main_zone).length > along:
                continue
            if line.intersection(self.river_zone).length > along:
                continue
            for part in _lines(line.intersection(keep_box), 15.0):
                self.roads.append(Road(part, width, kind))

    def _roundabouts(self) -> None:
        rng = self.rng(5)
        inner = self.box.buffer(-45.0)
        cands = []
        for m in self.mains:
            for r in self.roads:
                if r.kind not in ("street", "main") or r.line is m:
                    continue
                x = m.intersection(r.line)
                for g in getattr(x, "geoms", [x]):
                    clear = not self.rivers or g.distance(self.river_zone) > 40.0
                    if isinstance(g, Point) and inner.contains(g) and clear:
                        cands.append((g.x, g.y))
        # Unique, stable order.
        cands = sorted({(round(x, 3), round(y, 3)) for x, y in cands})
        want = 1 if self.size < 1600 else 2
        chosen: list[tuple[float, float]] = []
        for i in rng.permutation(len(cands)):
            x, y = cands[int(i)]
            if all(math.hypot(x - a, y - b) > 250.0 for a, b in chosen):
                chosen.append((x, y))
            if len(chosen) >= want:
                break
        if not chosen and self.mains:
            # A roundabout where the main road passes closest to the centre, with a stub street.
            m = self.mains[0]
            c = Point((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)
            p = m.interpolate(m.project(c))
            q = m.interpolate(min(m.length, m.project(c) + 5.0))
            d = np.array([q.x - p.x, q.y - p.y])
            d = d / max(np.hypot(*d), 1e-9)
            stub = LineString([(p.x, p.y), (p.x - d[1] * 150.0, p.y + d[0] * 150.0)])
            for part in _lines(stub.intersection(self.box.buffer(30.0)), 15.0):
                self.roads.append(Road(part, float(rng.uniform(*ROAD_WIDTH["street"])), "street"))
            chosen.append((p.x, p.y))
        for x, y in chosen:
            self.roundabouts.append(
                Roundabout(float(x), float(y), float(rng.uniform(11.0, 18.0)), 7.0)
            )

    def _blocks(self) -> None:
        obst = [r.line.buffer(r.width_m / 2 + _VERGE[r.kind], quad_segs=4) for r in self.roads]
        obst += [r.line.buffer(r.width_m / 2 + 5.0, quad_segs=4) for r in self.rivers]
        obst += [Point(r.x, r.y).buffer(r.radius_m + r.width_m / 2 + 2.0) for r in self.roundabouts]
        blocks = _polys(self.box.difference(shapely.union_all(obst)), 300.0)
        rng = self.rng(6)
        reps = [b.representative_point() for b in blocks]
        urb = self.urban(np.array([p.x for p in reps]), np.array([p.y for p in reps]))
        uses = []
        for b, u in zip(blocks, urb, strict=True):
            r = rng.random()
            a = b.area
            if a < 2500:
                use = "green"
            elif u > 0.72:
                use = "core" if r < 0.4 else "residential"
            elif u > 0.42:
                use = ["residential", "industrial", "park", "sports"][
                    int(np.searchsorted([0.7, 0.83, 0.92], r, side="right"))
                ]
            elif u > 0.2:
                use = ["residential", "industrial", "sports", "farmland", "park"][
                    int(np.searchsorted([0.3, 0.45, 0.55, 0.85], r, side="right"))
                ]
            else:
                use = ["farmland", "forest", "park"][
                    int(np.searchsorted([0.74, 0.93], r, side="right"))
                ]
            uses.append(use)
        areas = np.array([b.area for b in blocks])
        # Every world has a sports ground, a forest and a lake where a block can hold them.
        if "sports" not in uses:
            ok = [
                i
                for i, (b, u) in enumerate(zip(blocks, uses, strict=True))
                if u != "core" and _fits(b, FOOTBALL[0] + 14, FOOTBALL[1] + 14)
            ]
            if ok:
                i = max(ok, key=lambda k: (urb[k], areas[k]))
                uses[i] = "sports"
        if "forest" not in uses:
            ok = [i for i, u in enumerate(uses) if u in ("farmland", "park") and areas[i] > 8000]
            if ok:
                uses[min(ok, key=lambda k: urb[k])] = "forest"
        lake_block = -1
        ok = [
            i
            for i, u in enumerate(uses)
            if u in ("farmland", "park", "green", "forest") and areas[i] > 6000
        ]
        if ok:
            lake_block = int(ok[int(rng.integers(len(ok)))])
        for i, (b, use) in enumerate(zip(blocks, uses, strict=True)):
            brng = self.rng(100, i)
            if i == lake_block or (use in ("farmland", "park") and brng.random() < 0.12):
                b = self._lake(b, brng, force=i == lake_block)
            jobs = [(part, use) for part in _polys(b, 300.0)]
            limit = _AREA_LIMIT.get(use)
            if limit is not None and b.area > limit * 1.5:
                # Parks, sports grounds and estates keep to a few hectares: the rest of a big
                # block becomes houses near a village, fields outside.
                rest = "residential" if urb[i] > 0.35 else "farmland"
                jobs = []
                for part in _polys(b, 300.0):
                    pieces, _ = _subdivide(part, limit, brng)
                    keep = max(range(len(pieces)), key=lambda k: _fits(pieces[k], 110, 75))
                    jobs += [(pc, use if k == keep else rest) for k, pc in enumerate(pieces)]
            for part, u in jobs:
                getattr(self, f"_fill_{u}")(part, brng)

    # ---- block fillers

    def _lake(self, block: Polygon, rng, force: bool) -> BaseGeometry:
        """A pond or lake inside the block, with a meadow shore and trees; returns the rest."""
        inner = block.buffer(-10.0)
        if inner.is_empty:
            return block
        for _ in range(12 if force else 4):
            p = _sample_points(inner, 1, rng)
            if not len(p):
                break
            radius = rng.uniform(20.0, min(110.0, 0.45 * math.sqrt(block.area)))
            lake = _blob(p[0, 0], p[0, 1], radius, rng)
            if inner.contains(lake):
                self.lakes.append(Lake(lake))
                self.surfaces.append(
                    Surface(lake.buffer(7.0).intersection(block), "meadow", float(rng.random()))
                )
                for x, y in _sample_points(
                    lake.buffer(9.0).difference(lake.buffer(3.0)), int(lake.length / 25), rng
                ):
                    self._tree(x, y, rng)
                rest = block.difference(lake.buffer(9.0))
                return rest
        return block

    def _tree(
        self, x: float, y: float, rng, big: bool = False, conifer: bool | None = None
    ) -> None:
        con = bool(rng.random() < 0.25) if conifer is None else conifer
        r = rng.uniform(3.0, 5.0) if big else rng.uniform(1.6, 4.0)
        if con:
            r *= 0.75
        h = r * rng.uniform(2.6, 3.8) + rng.uniform(1.0, 3.0)
        self.trees.append(
            Tree(float(x), float(y), float(r), float(h), "conifer" if con else "deciduous")
        )

    def _fill_green(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block, "lawn", float(rng.random())))
        for x, y in _sample_points(block.buffer(-2.0), int(rng.integers(1, 4)), rng):
            self._tree(x, y, rng)

    def _fill_park(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block, "lawn", float(rng.random())))
        for _ in range(int(rng.integers(1, 3))):  # footpaths across
            ends = _sample_points(block.buffer(-3.0), 2, rng) if block.area > 2000 else []
            if len(ends) < 2:
                break
            line = LineString(_bezier(ends[0], ends[1], rng, 0.15, 4.0))
            for part in _lines(line.intersection(block), 10.0):
                self.roads.append(Road(part, float(rng.uniform(*ROAD_WIDTH["path"])), "path"))
        n = int(block.area / 450.0)
        centres = _sample_points(block.buffer(-3.0), max(1, n // 6), rng)
        for c in centres:
            for _ in range(6):
                x, y = c + rng.normal(0.0, 12.0, 2)
                if shapely.contains_xy(block, x, y):
                    self._tree(x, y, rng, big=rng.random() < 0.3)

    def _fill_forest(self, block: Polygon, rng) -> None:
        area = block
        limit = rng.uniform(40000.0, 90000.0)
        if block.area > limit:
            # Woods stay patches (a large uniform canopy says nothing about where one is):
            # one piece is forest, the rest farmland.
            pieces, _ = _subdivide(block, limit / 1.4, rng)
            k = int(rng.integers(len(pieces)))
            area = pieces[k]
            for i, p in enumerate(pieces):
                if i != k:
                    self._fill_farmland(p, rng, forest=False)
        if area.area > 30000 and rng.random() < 0.6:
            # A straight forest track right across, cut out of the canopy.
            ends = _sample_points(area.buffer(-5.0), 2, rng)
            if len(ends) == 2 and np.hypot(*(ends[1] - ends[0])) > 60.0:
                a, d = ends[0], ends[1] - ends[0]
                ext = LineString([a - d * 3, a + d * 4])
                for part in _lines(ext.intersection(area), 30.0):
                    w = float(rng.uniform(*ROAD_WIDTH["track"]))
                    self.roads.append(Road(part, w, "track"))
                    area = area.difference(part.buffer(w / 2 + 1.5))
        kind = str(rng.choice(["deciduous", "conifer", "mixed"], p=[0.45, 0.3, 0.25]))
        for p in _polys(area.buffer(-1.5), 400.0):
            self.forests.append(Forest(p, kind, int(rng.integers(2**31))))

    def _fill_farmland(self, block: Polygon, rng, forest: bool = True) -> None:
        if block.area > 25000 and rng.random() < 0.3:
            block = self._farmstead(block, rng)
        if forest and block.area > 60000 and rng.random() < 0.12:
            pieces, _ = _subdivide(block, block.area / 2.5, rng)
            self._fill_forest(pieces[-1], rng)
            block = shapely.union_all(pieces[:-1]) if len(pieces) > 1 else Polygon()
        for poly in _polys(block, 300.0):
            target = rng.uniform(10000.0, 28000.0)
            pieces, cuts = _subdivide(poly, target, rng)
            for c in cuts:
                r = rng.random()
                if r < 0.3:
                    for line in _lines(c, 20.0):
                        self.hedges.append(Hedge(line, float(rng.uniform(2.0, 4.0))))
                elif r < 0.4:
                    for line in _lines(c, 40.0):
                        self.roads.append(
                            Road(line, float(rng.uniform(*ROAD_WIDTH["track"])), "track")
                        )
            if rng.random() < 0.2:  # a hedge around the whole block, along the roads
                for edge in _polys(poly.buffer(-1.5), 1000.0)[:1]:
                    ring = LineString(edge.exterior.coords)
                    self.hedges.append(Hedge(ring, float(rng.uniform(2.0, 3.5))))
            for piece in pieces:
                inner = piece.buffer(-2.0 if len(pieces) > 1 else -1.5)
                for fp in _polys(inner, 1500.0):
                    crop = str(rng.choice(CROPS, p=_CROP_WEIGHTS))
                    ang, _, _ = _orientation(fp)
                    if rng.random() < 0.3:
                        ang += 90.0
                    self.fields.append(_make_field(fp, crop, ang + rng.normal(0.0, 2.0), rng))
                    if rng.random() < 0.08:
                        for x, y in _sample_points(fp.buffer(-8.0), 1, rng):
                            self._tree(x, y, rng, big=True, conifer=False)
                if inner.area < 1500.0 and piece.area > 300.0:
                    self.surfaces.append(Surface(piece, "meadow", float(rng.random())))

    def _farmstead(self, block: Polygon, rng) -> Polygon:
        ring = orient(block).exterior
        for _ in range(6):
            s = rng.uniform(0, ring.length)
            p = np.asarray(ring.interpolate(s).coords[0])
            q = np.asarray(ring.interpolate((s + 3.0) % ring.length).coords[0])
            t = (q - p) / max(np.hypot(*(q - p)), 1e-9)
            n = np.array([-t[1], t[0]])  # counter-clockwise ring: the inside is to the left
            length, width = rng.uniform(45.0, 65.0), rng.uniform(35.0, 45.0)
            c = p + n * (width / 2 + 4.0)
            yard = Rect(
                float(c[0]),
                float(c[1]),
                float(length),
                float(width),
                math.degrees(math.atan2(t[1], t[0])),
            )
            if not block.buffer(-1.0).contains(yard.polygon()):
                continue
            self.surfaces.append(Surface(yard.polygon(), "yard", float(rng.random())))
            roof = str(rng.choice(["red", "brown", "grey"]))
            L, W = length, width
            specs = [  # (u, v, length, width, eaves, gable) in the yard's frame
                (-L / 2 + 8.0, -W / 2 + 7.0, 12.0, 9.0, 4.0, True),
                (
                    L / 2 - 17.0,
                    W / 2 - 9.0,
                    rng.uniform(24.0, 32.0),
                    rng.uniform(12.0, 16.0),
                    6.0,
                    True,
                ),
                (-L / 2 + 9.0, W / 2 - 6.0, 16.0, 8.0, 3.5, rng.random() < 0.5),
            ]
            for u, v, bl, bw, eaves, gable in specs:
                pc = yard.local(u, v)
                rect = Rect(float(pc[0]), float(pc[1]), float(bl), float(bw), yard.angle_deg)
                ridge = eaves + (bw / 2 * math.tan(math.radians(30)) if gable else 0.0)
                self.buildings.append(
                    Building(
                        (BuildingPart(rect, float(eaves), float(ridge)),),
                        roof,
                        "farm",
                        float(rng.random()),
                    )
                )
            for _ in range(int(rng.integers(2, 5))):
                pt = yard.local(rng.uniform(-L / 2, L / 2), W / 2 + rng.uniform(3.0, 8.0))
                self._tree(pt[0], pt[1], rng, big=True)
            return block.difference(yard.polygon().buffer(3.0))
        return block

    def _houses_along(
        self,
        block: Polygon,
        rng,
        *,
        spacing,
        length,
        depth,
        setback,
        eaves,
        gable_p,
        roofs,
        use,
        gardens,
    ) -> list[Polygon]:
        """Buildings in a row along the block's edge (the street side), with gardens, hedges,
        driveways and garden trees. Returns the footprints placed."""
        block = orient(block)
        ring = block.exterior
        inner = block.buffer(-0.5)
        placed: list[Polygon] = []
        s = rng.uniform(0, spacing[1])
        roof_names, roof_p = roofs
        while s < ring.length - 5.0:
            gap = rng.uniform(*spacing)
            p = np.asarray(ring.interpolate(s).coords[0])
            q = np.asarray(ring.interpolate(s + 4.0).coords[0])
            r0 = np.asarray(ring.interpolate(max(0.0, s - 4.0)).coords[0])
            t1, t0 = q - p, p - r0
            s += gap
            if np.hypot(*t1) < 1e-6 or np.hypot(*t0) < 1e-6:
                continue
            t1, t0 = t1 / np.hypot(*t1), t0 / np.hypot(*t0)
            if float(t1 @ t0) < 0.8:  # a corner: skip
                continue
            n = np.array([-t1[1], t1[0]])
            ln, dp, sb = rng.uniform(*length), rng.uniform(*depth), rng.uniform(*setback)
            c = p + n * (sb + dp / 2)
            ang = math.degrees(math.atan2(t1[1], t1[0]))
            rect = Rect(float(c[0]), float(c[1]), float(ln), float(dp), ang)
            poly = rect.polygon()
            if (
                not inner.contains(poly)
                or any(poly.distance(o) < 2.5 for o in placed[-6:])
                or any(poly.intersects(o) for o in placed)
            ):
                continue
            parts = []
            e = rng.uniform(*eaves)
            gable = rng.random() < gable_p
            # Ridge across the street for a fraction of gabled houses (split length/width).
            ridge_along = rng.random() < 0.75
            main_rect = rect if ridge_along else Rect(rect.cx, rect.cy, dp, ln, ang + 90.0)
            rise = (
                (main_rect.width / 2) * math.tan(math.radians(rng.uniform(28, 42)))
                if gable
                else 0.0
            )
            parts.append(BuildingPart(main_rect, float(e), float(e + rise)))
            if rng.random() < 0.2 and use == "house":
                wl, ww = rng.uniform(6.0, 9.0), rng.uniform(5.0, 7.0)
                side = 1.0 if rng.random() < 0.5 else -1.0
                wc = rect.local(side * (ln / 2 - ww / 2), dp / 2 + wl / 2 - 1.0)
                wing = Rect(float(wc[0]), float(wc[1]), float(wl), float(ww), ang + 90.0)
                wr = (ww / 2) * math.tan(math.radians(35)) if gable else 0.0
                if inner.contains(wing.polygon()):
                    parts.append(BuildingPart(wing, float(e), float(e + wr)))
            roof = str(rng.choice(roof_names, p=roof_p))
            b = Building(tuple(parts), roof, use, float(rng.random()))
            self.buildings.append(b)
            placed.append(b.footprint)
            if gardens:
                gd = sb + dp + rng.uniform(8.0, 22.0)
                gc = p + n * (gd / 2)
                garden = Rect(float(gc[0]), float(gc[1]), float(gap * 0.98), float(gd), ang)
                lawn = garden.polygon().intersection(block)
                for lp in _polys(lawn, 20.0):
                    self.surfaces.append(Surface(lp, "lawn", float(rng.random())))
                if sb > 4.0 and rng.random() < 0.7:
                    side = 1.0 if rng.random() < 0.5 else -1.0
                    dc = p + t1 * side * (ln / 2 - 2.0) + n * (sb / 2)
                    drive = Rect(float(dc[0]), float(dc[1]), 3.0, float(sb), ang)
                    self.surfaces.append(Surface(drive.polygon(), "paved", float(rng.random())))
                if rng.random() < 0.45:
                    a = p + t1 * (gap / 2)
                    line = LineString([a, a + n * gd])
                    for part in _lines(line.intersection(block), 8.0):
                        self.hedges.append(Hedge(part, float(rng.uniform(1.0, 1.6))))
                for _ in range(int(rng.integers(0, 3))):
                    tp = (
                        p + n * rng.uniform(sb + dp + 3.0, gd) + t1 * rng.uniform(-gap / 3, gap / 3)
                    )
                    if shapely.contains_xy(block, tp[0], tp[1]):
                        self._tree(tp[0], tp[1], rng)
        return placed

    def _split_by_streets(self, block: Polygon, rng, target: float) -> list[Polygon]:
        """Big village blocks are cut by access streets into blocks of about `target` m2."""
        if block.area < 1.8 * target:
            return [block]
        _, cuts = _subdivide(block, target, rng)
        width = float(rng.uniform(*ROAD_WIDTH["street"]))
        gaps = []
        for c in cuts:
            for line in _lines(c, 20.0):
                self.roads.append(Road(line, width, "street"))
                gaps.append(line.buffer(width / 2 + _VERGE["street"], quad_segs=4))
        rest = block.difference(shapely.union_all(gaps)) if gaps else block
        return _polys(rest, 300.0)

    def _fill_residential(self, block: Polygon, rng) -> None:
        parts = self._split_by_streets(block, rng, rng.uniform(11000.0, 18000.0))
        if len(parts) > 1:
            for part in parts:
                self._fill_residential(part, rng)
            return
        self.surfaces.append(Surface(block, "lawn", float(rng.random())))
        placed = self._houses_along(
            block,
            rng,
            spacing=(17.0, 27.0),
            length=(9.0, 15.0),
            depth=(8.0, 11.0),
            setback=(4.0, 9.0),
            eaves=(3.0, 6.5),
            gable_p=0.8,
            roofs=(["red", "brown", "grey", "dark"], [0.45, 0.2, 0.15, 0.2]),
            use="house",
            gardens=True,
        )
        interior = block.buffer(-45.0)
        if interior.area > 1500:
            r = rng.random()
            taken = shapely.union_all(placed) if placed else Polygon()
            if r < 0.3:
                self._parking(interior, rng, taken)
            elif r < 0.55:
                for x, y in _sample_points(interior, int(interior.area / 500.0) + 1, rng):
                    self._tree(x, y, rng, big=rng.random() < 0.3)
            elif r < 0.8:
                for ip in _polys(interior, 800.0):
                    self._houses_along(
                        ip,
                        rng,
                        spacing=(20.0, 30.0),
                        length=(9.0, 14.0),
                        depth=(8.0, 11.0),
                        setback=(3.0, 6.0),
                        eaves=(3.0, 6.0),
                        gable_p=0.7,
                        roofs=(["red", "brown", "grey", "dark"], [0.4, 0.25, 0.15, 0.2]),
                        use="house",
                        gardens=False,
                    )
        if rng.random() < 0.35:  # street trees on the verge
            ring = orient(block).exterior
            for s in np.arange(rng.uniform(0, 10), ring.length, rng.uniform(10.0, 16.0)):
                p = np.asarray(ring.interpolate(s).coords[0])
                q = np.asarray(ring.interpolate(s + 1.0).coords[0])
                t = (q - p) / max(np.hypot(*(q - p)), 1e-9)
                x, y = p + np.array([-t[1], t[0]]) * 1.2
                if not any(shapely.contains_xy(o, x, y) for o in placed[-4:]):
                    self._tree(x, y, rng)

    def _fill_core(self, block: Polygon, rng) -> None:
        parts = self._split_by_streets(block, rng, rng.uniform(7000.0, 12000.0))
        if len(parts) > 1:
            for part in parts:
                self._fill_core(part, rng)
            return
        self.surfaces.append(
            Surface(block, "plaza" if block.area < 6000 else "lawn", float(rng.random()))
        )
        placed = self._houses_along(
            block,
            rng,
            spacing=(14.0, 24.0),
            length=(12.0, 22.0),
            depth=(10.0, 14.0),
            setback=(0.5, 3.0),
            eaves=(6.0, 11.0),
            gable_p=0.85,
            roofs=(["red", "brown", "dark", "grey"], [0.55, 0.25, 0.12, 0.08]),
            use="house",
            gardens=False,
        )
        interior = block.buffer(-18.0)
        taken = shapely.union_all(placed) if placed else Polygon()
        if interior.area > 900:
            r = rng.random()
            if r < 0.35:
                ang, _, _ = _orientation(interior)
                for _ in range(20):
                    p = _sample_points(interior, 1, rng)
                    if not len(p):
                        break
                    nave = Rect(float(p[0, 0]), float(p[0, 1]), 30.0, 14.0, ang)
                    tc = nave.local(-15.0 - 4.0, 0.0)
                    tower = Rect(float(tc[0]), float(tc[1]), 8.0, 8.0, ang)
                    poly = shapely.union_all([nave.polygon(), tower.polygon()])
                    if interior.contains(poly) and not poly.intersects(taken):
                        self.buildings.append(
                            Building(
                                (BuildingPart(nave, 10.0, 17.0), BuildingPart(tower, 28.0, 36.0)),
                                "dark",
                                "civic",
                                float(rng.random()),
                            )
                        )
                        taken = taken.union(poly.buffer(4.0))
                        break
            if r < 0.7:
                self._parking(interior, rng, taken)
            for x, y in _sample_points(interior, int(interior.area / 600.0), rng):
                if not shapely.contains_xy(taken, x, y):
                    self._tree(x, y, rng, big=True)

    def _fill_industrial(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block.buffer(-1.0), "paved", float(rng.random())))
        ang, _, _ = _orientation(block)
        inner = block.buffer(-6.0)
        taken: BaseGeometry = Polygon()
        for _ in range(int(rng.integers(1, 5))):
            for _try in range(25):
                p = _sample_points(inner, 1, rng)
                if not len(p):
                    break
                length, width = float(rng.uniform(30.0, 95.0)), float(rng.uniform(20.0, 45.0))
                turn = float(rng.choice([0.0, 90.0]))
                rect = Rect(float(p[0, 0]), float(p[0, 1]), length, width, ang + turn)
                poly = rect.polygon()
                if inner.contains(poly) and not poly.intersects(taken):
                    e = float(rng.uniform(7.0, 14.0))
                    roof = str(rng.choice(["white", "grey", "dark"], p=[0.4, 0.45, 0.15]))
                    self.buildings.append(
                        Building(
                            (BuildingPart(rect, e, e),), roof, "industrial", float(rng.random())
                        )
                    )
                    taken = taken.union(poly.buffer(8.0))
                    break
        self._parking(inner, rng, taken)
        ring = orient(block).exterior
        for s in np.arange(rng.uniform(0, 10), ring.length, rng.uniform(9.0, 14.0)):
            if rng.random() < 0.5:
                p = np.asarray(ring.interpolate(s).coords[0])
                q = np.asarray(ring.interpolate(s + 1.0).coords[0])
                t = (q - p) / max(np.hypot(*(q - p)), 1e-9)
                x, y = p + np.array([-t[1], t[0]]) * 3.0
                if not shapely.contains_xy(taken, x, y):
                    self._tree(x, y, rng)

    def _fill_sports(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block, "lawn", float(rng.random())))
        ang, _, _ = _orientation(block)
        inner = block.buffer(-7.0)
        taken: BaseGeometry = Polygon()
        pitch = _place_rect(inner, FOOTBALL[0], FOOTBALL[1], ang, rng, taken, pad=6.0)
        if pitch is not None:
            self.sports.append(SportsGround("football", pitch, 1, "grass"))
            taken = taken.union(pitch.polygon().buffer(8.0))
        n = int(rng.integers(1, 5))
        for k in range(n, 0, -1):
            courts = _place_rect(inner, TENNIS_COURT[0], TENNIS_COURT[1] * k, ang, rng, taken)
            if courts is not None:
                surface = str(rng.choice(["clay", "hard-green", "hard-blue"], p=[0.6, 0.25, 0.15]))
                self.sports.append(SportsGround("tennis", courts, k, surface))
                taken = taken.union(courts.polygon().buffer(4.0))
                break
        club = _place_rect(inner, 18.0, 10.0, ang, rng, taken)
        if club is not None:
            self.buildings.append(
                Building((BuildingPart(club, 3.5, 6.0),), "red", "civic", float(rng.random()))
            )
            taken = taken.union(club.polygon().buffer(4.0))
        self._parking(inner, rng, taken)
        ring = orient(block).exterior
        for s in np.arange(rng.uniform(0, 10), ring.length, rng.uniform(8.0, 12.0)):
            p = np.asarray(ring.interpolate(s).coords[0])
            q = np.asarray(ring.interpolate(s + 1.0).coords[0])
            t = (q - p) / max(np.hypot(*(q - p)), 1e-9)
            x, y = p + np.array([-t[1], t[0]]) * 3.5
            if not shapely.contains_xy(taken, x, y):
                self._tree(x, y, rng, conifer=rng.random() < 0.5)

    def _parking(self, area: BaseGeometry, rng, taken: BaseGeometry) -> None:
        if area.is_empty:
            return
        poly = max(_polys(area), key=lambda p: p.area, default=None)
        if poly is None:
            return
        ang, _, _ = _orientation(poly)
        rows = 4 if rng.random() < 0.4 else 2
        width = rows // 2 * (2 * STALL_DEPTH + AISLE)
        length = STALL_WIDTH * int(rng.integers(8, 26))
        for _ in range(2):
            rect = _place_rect(poly, length, width, ang, rng, taken)
            if rect is not None:
                p = Parking(rect, rows, ())
                self.parkings.append(replace(p, cars=_park_cars(p, rng, rng.uniform(0.25, 0.95))))
                return
            length, rows, width = length * 0.6, 2, 2 * STALL_DEPTH + AISLE


def _fits(poly: Polygon, length: float, width: float) -> bool:
    _, long_side, short_side = _orientation(poly)
    return long_side >= length and short_side >= width and poly.area > 1.3 * length * width


def _place_rect(
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
    pts = _sample_points(area, tries, rng) if isinstance(area, Polygon) else np.zeros((0, 2))
    if not isinstance(area, Polygon):
        polys = _polys(area)
        if not polys:
            return None
        pts = np.vstack([_sample_points(p, tries // len(polys) + 1, rng) for p in polys])
    for i, (x, y) in enumerate(pts):
        ang = angle + (90.0 if i % 2 else 0.0)
        rect = Rect(float(x), float(y), float(length), float(width), float(ang))
        poly = rect.polygon()
        check = poly.buffer(pad, join_style="mitre") if pad else poly
        if area.contains(check) and not poly.intersects(taken):
            return rect
    return None


def _subdivide(poly: Polygon, target: float, rng) -> tuple[list[Polygon], list[BaseGeometry]]:
    """Split a polygon into pieces of about `target` m2 by cuts across its long axis (the way
    fields are laid out). Returns (pieces, cut lines inside the polygon)."""
    stack, out, cuts = [poly], [], []
    while stack:
        p = stack.pop()
        if p.area <= target * 1.4:
            out.append(p)
            continue
        ang, length, _ = _orientation(p)
        a = math.radians(ang)
        c = np.asarray(p.minimum_rotated_rectangle.centroid.coords[0])
        along = np.array([math.cos(a), math.sin(a)])
        at = c + along * (rng.uniform(0.35, 0.65) - 0.5) * length
        cut_ang = a + math.pi / 2 + math.radians(rng.normal(0.0, 5.0))
        d = np.array([math.cos(cut_ang), math.sin(cut_ang)]) * (length * 2 + 100.0)
        blade = LineString([at - d, at + d])
        pieces = _polys(split(p, blade), 1.0)
        if len(pieces) < 2:
            out.append(p)
            continue
        cuts.append(blade.intersection(p))
        stack.extend(pieces)
    out.sort(key=lambda q: (round(q.centroid.y, 3), round(q.centroid.x, 3)))
    return out, cuts


def iter_features(world: World) -> Iterable[tuple[str, object]]:
    """(layer, feature) for every feature, cars included (layer "cars"), in a stable order."""
    for layer in LAYERS:
        for f in getattr(world, layer):
            yield layer, f
    for c in world.cars:
        yield "cars", c


__all__ = [
    "CROPS",
    "LAYERS",
    "ROOFS",
    "Building",
    "BuildingPart",
    "Canopy",
    "Car",
    "Field",
    "Forest",
    "Hedge",
    "Lake",
    "Parking",
    "Rect",
    "River",
    "Road",
    "Roundabout",
    "SportsGround",
    "Surface",
    "Tree",
    "World",
    "feature_geometry",
    "iter_features",
    "utm_epsg",
]
