"""A procedural landscape as a vector scene: the synthetic world the demo model is trained on.

No real drone photos or satellite images are available to this project, so it makes its own
place. A `World` is a square of European countryside with villages (about one per km2), placed
at a real location in a real projected CRS: per seed a lon/lat in Europe (4..16 E, 44..54 N),
its UTM zone (WGS 84, EPSG:326xx) and a lower-left corner snapped to whole metres. Every
coordinate in the scene is in that CRS, in metres; angles are degrees counter-clockwise from
east (the x axis) unless a name says otherwise.

The scene model (feature kinds in `features.py`; all areas are shapely Polygons, all lines
LineStrings):

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

This module holds the `World` itself (the generated scene, its variants, window queries and
coordinate transforms); `layout.py` is the recipe that generates one, `rural.py` and
`village.py` fill its blocks, `shapes.py` has their geometry helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Point, Polygon, box

from .features import (
    CROPS,
    LAYERS,
    Building,
    Canopy,
    Car,
    Field,
    Forest,
    Hedge,
    Lake,
    Parking,
    River,
    Road,
    Roundabout,
    SportsGround,
    Surface,
    Tree,
    feature_geometry,
    make_field,
    park_cars,
)


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
        from .layout import Generator  # the generator builds Worlds: imported when needed

        return Generator(int(seed), float(size_m)).build()

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
                f = make_field(f.polygon, crop, angle % 180.0, rng)
            fields.append(f)
        # Trees: ~12 % felled, ~10 % planted near others, the rest moved a few metres (a
        # move that lands on a road, building or water is retried, then the tree stays).
        keep = [t for t in self.trees if rng.random() >= 0.12]
        extra = rng.choice(len(self.trees), size=len(self.trees) // 10) if self.trees else []
        for i in extra:
            t = self.trees[int(i)]
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(6.0, 15.0)
            keep.append(replace(t, x=t.x + dist * math.cos(ang), y=t.y + dist * math.sin(ang)))
        keep = drop_blocked_trees(keep, self._tree_obstacles)
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
            ok = blocked_mask(moved, self._tree_obstacles)
            for i, t, bad in zip(todo, moved, ok, strict=True):
                if not bad:
                    trees[i] = t
            todo = [i for i, bad in zip(todo, ok, strict=True) if bad]
        parkings = tuple(
            replace(p, cars=park_cars(p, rng, rng.uniform(0.25, 0.95))) for p in self.parkings
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
        return transformer(self.epsg, inverse=True).transform(x, y)

    def from_lonlat(self, lon, lat):
        return transformer(self.epsg, inverse=False).transform(lon, lat)

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
        return obstacle_tree(self)


def obstacle_tree(s) -> shapely.STRtree:
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


_TRANSFORMERS: dict[tuple[int, bool], Transformer] = {}


def transformer(epsg: int, inverse: bool) -> Transformer:
    key = (epsg, inverse)
    if key not in _TRANSFORMERS:
        src, dst = (epsg, 4326) if inverse else (4326, epsg)
        _TRANSFORMERS[key] = Transformer.from_crs(src, dst, always_xy=True)
    return _TRANSFORMERS[key]


def utm_epsg(lon: float, lat: float) -> int:
    """The WGS 84 UTM zone of a point (no Norway/Svalbard exceptions: they lie north of 56 N)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def blocked_mask(trees: list[Tree], tree: shapely.STRtree) -> np.ndarray:
    """True for trees whose trunk area meets a building, road, water or pitch."""
    blocked = np.zeros(len(trees), bool)
    if trees:
        pts = shapely.points([(t.x, t.y) for t in trees])
        radii = np.array([max(0.8, 0.4 * t.crown_radius_m) for t in trees])
        hits = tree.query(shapely.buffer(pts, radii, quad_segs=2), predicate="intersects")
        blocked[hits[0]] = True
    return blocked


def drop_blocked_trees(trees: list[Tree], tree: shapely.STRtree) -> list[Tree]:
    blocked = blocked_mask(trees, tree)
    return [t for t, b in zip(trees, blocked, strict=True) if not b]


def iter_features(world: World) -> Iterable[tuple[str, object]]:
    """(layer, feature) for every feature, cars included (layer "cars"), in a stable order."""
    for layer in LAYERS:
        for f in getattr(world, layer):
            yield layer, f
    for c in world.cars:
        yield "cars", c
