"""The feature kinds of a synthetic world: what a scene is made of, and their constants.

All areas are shapely Polygons, all lines LineStrings, every coordinate in the world's UTM CRS
in metres; angles are degrees counter-clockwise from east (the x axis) unless a name says
otherwise. Features are frozen dataclasses: a world never changes, a variant is a new world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

CROPS = ("wheat", "barley", "maize", "rapeseed", "grassland", "potato", "sunflower", "ploughed")
CROP_WEIGHTS = (0.24, 0.12, 0.17, 0.10, 0.15, 0.08, 0.05, 0.09)
# Stylised row spacing (m): real drill rows are finer than any pixel; these are what reads as
# stripes from the air (rows, ridges, mowing swaths, furrows).
CROP_SPACING = {
    "wheat": (2.5, 4.0),
    "barley": (2.5, 4.0),
    "maize": (3.0, 4.5),
    "rapeseed": (3.0, 5.0),
    "grassland": (5.0, 9.0),
    "potato": (2.5, 3.5),
    "sunflower": (3.0, 4.5),
    "ploughed": (2.0, 3.0),
}
TRAMLINE_CROPS = ("wheat", "barley", "rapeseed")
ROOFS = ("red", "brown", "grey", "dark", "white")
CAR_COLOURS = ("white", "black", "grey", "silver", "blue", "red", "darkblue", "green", "beige")
CAR_WEIGHTS = (0.24, 0.18, 0.17, 0.14, 0.08, 0.07, 0.06, 0.03, 0.03)
ROAD_WIDTH = {"main": (7.0, 8.5), "street": (5.5, 6.5), "track": (3.0, 4.0), "path": (2.0, 2.8)}
VERGE = {"main": 2.5, "street": 1.5, "track": 0.8, "path": 0.5}
STALL_WIDTH, STALL_DEPTH, AISLE = 2.5, 5.0, 6.0
AREA_LIMIT = {"park": 35000.0, "sports": 30000.0, "industrial": 45000.0, "green": 5000.0}
FOOTBALL = (105.0, 68.0)
TENNIS_COURT = (36.6, 18.3)  # the paved area of one court; the lines are 23.77 x 10.97


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


def make_field(poly: Polygon, crop: str, angle: float, rng) -> Field:
    lo, hi = CROP_SPACING[crop]
    tram = float(rng.uniform(18.0, 24.0)) if crop in TRAMLINE_CROPS else 0.0
    return Field(
        poly, crop, float(angle % 180.0), float(rng.uniform(lo, hi)), tram, float(rng.random())
    )


def park_cars(p: Parking, rng, occupancy: float) -> tuple[Car, ...]:
    cars = []
    for x, y, ang in p.stalls():
        if rng.random() >= occupancy:
            continue
        length = rng.uniform(4.0, 5.0)
        a = ang + rng.normal(0.0, 2.5) + (180.0 if rng.random() < 0.3 else 0.0)
        dx, dy = rng.normal(0.0, 0.15, 2)
        colour = str(rng.choice(CAR_COLOURS, p=CAR_WEIGHTS))
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
