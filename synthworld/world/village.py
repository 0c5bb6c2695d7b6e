"""Block fillers of a village: houses in rows with gardens, access streets, the village
core (church, square), industrial estates, sports grounds and car parks. Mixed into the
generator (`layout.Generator`), whose feature lists they append to."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from .features import (
    AISLE,
    FOOTBALL,
    ROAD_WIDTH,
    STALL_DEPTH,
    STALL_WIDTH,
    TENNIS_COURT,
    VERGE,
    Building,
    BuildingPart,
    Hedge,
    Parking,
    Rect,
    Road,
    SportsGround,
    Surface,
    park_cars,
)
from .shapes import line_parts, orientation, place_rect, polygon_parts, sample_points, subdivide


class VillageBlocks:
    """Village fillers; the generator supplies `roads`, `buildings`, `surfaces`, `hedges`,
    `parkings`, `sports` (lists) and `_tree` (`rural.RuralBlocks`)."""

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
                for lp in polygon_parts(lawn, 20.0):
                    self.surfaces.append(Surface(lp, "lawn", float(rng.random())))
                if sb > 4.0 and rng.random() < 0.7:
                    side = 1.0 if rng.random() < 0.5 else -1.0
                    dc = p + t1 * side * (ln / 2 - 2.0) + n * (sb / 2)
                    drive = Rect(float(dc[0]), float(dc[1]), 3.0, float(sb), ang)
                    self.surfaces.append(Surface(drive.polygon(), "paved", float(rng.random())))
                if rng.random() < 0.45:
                    a = p + t1 * (gap / 2)
                    line = LineString([a, a + n * gd])
                    for part in line_parts(line.intersection(block), 8.0):
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
        _, cuts = subdivide(block, target, rng)
        width = float(rng.uniform(*ROAD_WIDTH["street"]))
        gaps = []
        for c in cuts:
            for line in line_parts(c, 20.0):
                self.roads.append(Road(line, width, "street"))
                gaps.append(line.buffer(width / 2 + VERGE["street"], quad_segs=4))
        rest = block.difference(shapely.union_all(gaps)) if gaps else block
        return polygon_parts(rest, 300.0)

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
                for x, y in sample_points(interior, int(interior.area / 500.0) + 1, rng):
                    self._tree(x, y, rng, big=rng.random() < 0.3)
            elif r < 0.8:
                for ip in polygon_parts(interior, 800.0):
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
                ang, _, _ = orientation(interior)
                for _ in range(20):
                    p = sample_points(interior, 1, rng)
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
            for x, y in sample_points(interior, int(interior.area / 600.0), rng):
                if not shapely.contains_xy(taken, x, y):
                    self._tree(x, y, rng, big=True)

    def _fill_industrial(self, block: Polygon, rng) -> None:
        self.surfaces.append(Surface(block.buffer(-1.0), "paved", float(rng.random())))
        ang, _, _ = orientation(block)
        inner = block.buffer(-6.0)
        taken: BaseGeometry = Polygon()
        for _ in range(int(rng.integers(1, 5))):
            for _try in range(25):
                p = sample_points(inner, 1, rng)
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
        ang, _, _ = orientation(block)
        inner = block.buffer(-7.0)
        taken: BaseGeometry = Polygon()
        pitch = place_rect(inner, FOOTBALL[0], FOOTBALL[1], ang, rng, taken, pad=6.0)
        if pitch is not None:
            self.sports.append(SportsGround("football", pitch, 1, "grass"))
            taken = taken.union(pitch.polygon().buffer(8.0))
        n = int(rng.integers(1, 5))
        for k in range(n, 0, -1):
            courts = place_rect(inner, TENNIS_COURT[0], TENNIS_COURT[1] * k, ang, rng, taken)
            if courts is not None:
                surface = str(rng.choice(["clay", "hard-green", "hard-blue"], p=[0.6, 0.25, 0.15]))
                self.sports.append(SportsGround("tennis", courts, k, surface))
                taken = taken.union(courts.polygon().buffer(4.0))
                break
        club = place_rect(inner, 18.0, 10.0, ang, rng, taken)
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
        poly = max(polygon_parts(area), key=lambda p: p.area, default=None)
        if poly is None:
            return
        ang, _, _ = orientation(poly)
        rows = 4 if rng.random() < 0.4 else 2
        width = rows // 2 * (2 * STALL_DEPTH + AISLE)
        length = STALL_WIDTH * int(rng.integers(8, 26))
        for _ in range(2):
            rect = place_rect(poly, length, width, ang, rng, taken)
            if rect is not None:
                p = Parking(rect, rows, ())
                self.parkings.append(replace(p, cars=park_cars(p, rng, rng.uniform(0.25, 0.95))))
                return
            length, rows, width = length * 0.6, 2, 2 * STALL_DEPTH + AISLE
