"""Block fillers of the countryside: lawns, parks, woods, farmland (fields, hedges, tracks),
farmsteads, lakes, and single trees. Mixed into the generator (`layout.Generator`), whose
feature lists they append to."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from .features import (
    CROP_WEIGHTS,
    CROPS,
    ROAD_WIDTH,
    Building,
    BuildingPart,
    Forest,
    Hedge,
    Lake,
    Rect,
    Road,
    Surface,
    Tree,
    make_field,
)
from .shapes import bezier, blob, line_parts, orientation, polygon_parts, sample_points, subdivide


class RuralBlocks:
    """Countryside fillers; the generator supplies `roads`, `fields`, `forests`, `hedges`,
    `lakes`, `trees`, `surfaces`, `buildings` (lists) and the other fillers."""

    def _lake(self, block: Polygon, rng, force: bool) -> BaseGeometry:
        """A pond or lake inside the block, with a meadow shore and trees; returns the rest."""
        inner = block.buffer(-10.0)
        if inner.is_empty:
            return block
        for _ in range(12 if force else 4):
            p = sample_points(inner, 1, rng)
            if not len(p):
                break
            radius = rng.uniform(20.0, min(110.0, 0.45 * math.sqrt(block.area)))
            lake = blob(p[0, 0], p[0, 1], radius, rng)
            if inner.contains(lake):
                self.lakes.append(Lake(lake))
                self.surfaces.append(
                    Surface(lake.buffer(7.0).intersection(block), "meadow", float(rng.random()))
                )
                for x, y in sample_points(
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
        for x, y in sample_points(block.buffer(-2.0), int(rng.integers(1, 4)), rng):
            self._tree(x, y, rng)

    def _fill_park(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block, "lawn", float(rng.random())))
        for _ in range(int(rng.integers(1, 3))):  # footpaths across
            ends = sample_points(block.buffer(-3.0), 2, rng) if block.area > 2000 else []
            if len(ends) < 2:
                break
            line = LineString(bezier(ends[0], ends[1], rng, 0.15, 4.0))
            for part in line_parts(line.intersection(block), 10.0):
                self.roads.append(Road(part, float(rng.uniform(*ROAD_WIDTH["path"])), "path"))
        n = int(block.area / 450.0)
        centres = sample_points(block.buffer(-3.0), max(1, n // 6), rng)
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
            pieces, _ = subdivide(block, limit / 1.4, rng)
            k = int(rng.integers(len(pieces)))
            area = pieces[k]
            for i, p in enumerate(pieces):
                if i != k:
                    self._fill_farmland(p, rng, forest=False)
        if area.area > 30000 and rng.random() < 0.6:
            # A straight forest track right across, cut out of the canopy.
            ends = sample_points(area.buffer(-5.0), 2, rng)
            if len(ends) == 2 and np.hypot(*(ends[1] - ends[0])) > 60.0:
                a, d = ends[0], ends[1] - ends[0]
                ext = LineString([a - d * 3, a + d * 4])
                for part in line_parts(ext.intersection(area), 30.0):
                    w = float(rng.uniform(*ROAD_WIDTH["track"]))
                    self.roads.append(Road(part, w, "track"))
                    area = area.difference(part.buffer(w / 2 + 1.5))
        kind = str(rng.choice(["deciduous", "conifer", "mixed"], p=[0.45, 0.3, 0.25]))
        for p in polygon_parts(area.buffer(-1.5), 400.0):
            self.forests.append(Forest(p, kind, int(rng.integers(2**31))))

    def _fill_farmland(self, block: Polygon, rng, forest: bool = True) -> None:
        if block.area > 25000 and rng.random() < 0.3:
            block = self._farmstead(block, rng)
        if forest and block.area > 60000 and rng.random() < 0.12:
            pieces, _ = subdivide(block, block.area / 2.5, rng)
            self._fill_forest(pieces[-1], rng)
            block = shapely.union_all(pieces[:-1]) if len(pieces) > 1 else Polygon()
        for poly in polygon_parts(block, 300.0):
            target = rng.uniform(10000.0, 28000.0)
            pieces, cuts = subdivide(poly, target, rng)
            for c in cuts:
                r = rng.random()
                if r < 0.3:
                    for line in line_parts(c, 20.0):
                        self.hedges.append(Hedge(line, float(rng.uniform(2.0, 4.0))))
                elif r < 0.4:
                    for line in line_parts(c, 40.0):
                        self.roads.append(
                            Road(line, float(rng.uniform(*ROAD_WIDTH["track"])), "track")
                        )
            if rng.random() < 0.2:  # a hedge around the whole block, along the roads
                for edge in polygon_parts(poly.buffer(-1.5), 1000.0)[:1]:
                    ring = LineString(edge.exterior.coords)
                    self.hedges.append(Hedge(ring, float(rng.uniform(2.0, 3.5))))
            for piece in pieces:
                inner = piece.buffer(-2.0 if len(pieces) > 1 else -1.5)
                for fp in polygon_parts(inner, 1500.0):
                    crop = str(rng.choice(CROPS, p=CROP_WEIGHTS))
                    ang, _, _ = orientation(fp)
                    if rng.random() < 0.3:
                        ang += 90.0
                    self.fields.append(make_field(fp, crop, ang + rng.normal(0.0, 2.0), rng))
                    if rng.random() < 0.08:
                        for x, y in sample_points(fp.buffer(-8.0), 1, rng):
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
