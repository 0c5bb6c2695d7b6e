"""The world generator's layout recipe: villages, main roads, the river, the road grid,
roundabouts, then the blocks between the roads, each given a use and filled (`rural.py`,
`village.py`). One random stream per step and per block (see the determinism rule in
`scene.py`)."""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import LineString, Point, Polygon, box

from .features import (
    AREA_LIMIT,
    FOOTBALL,
    ROAD_WIDTH,
    VERGE,
    Building,
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
)
from .rural import RuralBlocks
from .scene import World, drop_blocked_trees, obstacle_tree, transformer, utm_epsg
from .shapes import bezier, fits, line_parts, polygon_parts, subdivide
from .village import VillageBlocks


class Generator(RuralBlocks, VillageBlocks):
    """Builds the `World` of (seed, size): one `build()` per instance."""

    def __init__(self, seed: int, size_m: float):
        self.seed = seed
        self.size = size_m
        rng = self.rng(0)
        lon, lat = float(rng.uniform(4.0, 16.0)), float(rng.uniform(44.0, 54.0))
        self.epsg = utm_epsg(lon, lat)
        CRS.from_epsg(self.epsg)  # a real CRS pyproj knows
        x, y = transformer(self.epsg, inverse=False).transform(lon, lat)
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
        trees = drop_blocked_trees(self.trees, obstacle_tree(self))
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        lon, lat = transformer(self.epsg, inverse=True).transform(cx, cy)
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
        return line_parts(LineString(pts).intersection(self.box.buffer(40.0)), 30.0)

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
            pts = bezier(a, b, rng, 0.05 if kind == "street" else 0.09)
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
            for part in line_parts(line.intersection(keep_box), 15.0):
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
            for part in line_parts(stub.intersection(self.box.buffer(30.0)), 15.0):
                self.roads.append(Road(part, float(rng.uniform(*ROAD_WIDTH["street"])), "street"))
            chosen.append((p.x, p.y))
        for x, y in chosen:
            self.roundabouts.append(
                Roundabout(float(x), float(y), float(rng.uniform(11.0, 18.0)), 7.0)
            )

    def _blocks(self) -> None:
        obst = [r.line.buffer(r.width_m / 2 + VERGE[r.kind], quad_segs=4) for r in self.roads]
        obst += [r.line.buffer(r.width_m / 2 + 5.0, quad_segs=4) for r in self.rivers]
        obst += [Point(r.x, r.y).buffer(r.radius_m + r.width_m / 2 + 2.0) for r in self.roundabouts]
        blocks = polygon_parts(self.box.difference(shapely.union_all(obst)), 300.0)
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
                if u != "core" and fits(b, FOOTBALL[0] + 14, FOOTBALL[1] + 14)
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
            jobs = [(part, use) for part in polygon_parts(b, 300.0)]
            limit = AREA_LIMIT.get(use)
            if limit is not None and b.area > limit * 1.5:
                # Parks, sports grounds and estates keep to a few hectares: the rest of a big
                # block becomes houses near a village, fields outside.
                rest = "residential" if urb[i] > 0.35 else "farmland"
                jobs = []
                for part in polygon_parts(b, 300.0):
                    pieces, _ = subdivide(part, limit, brng)
                    keep = max(range(len(pieces)), key=lambda k: fits(pieces[k], 110, 75))
                    jobs += [(pc, use if k == keep else rest) for k, pc in enumerate(pieces)]
            for part, u in jobs:
                getattr(self, f"_fill_{u}")(part, brng)
