"""A region's chip grid planned block by block, for regions too large to enumerate at once
(a country at the default sizes is 1e8 to 2e8 chips; tiling.plan_grid holds every chip's id
and centre in memory and refuses more than 5e7 lattice points per size).

    plan_blocks(ds, region, ...)  the grid CRS (chosen once, from the region's centre, as
                                  plan_grid does), the region inside the raster in that CRS,
                                  its area, and the blocks - squares of `block_m` aligned to
                                  multiples of `block_m` - that intersect it, each with an
                                  estimated chip count. No chip is enumerated: the blocks and
                                  their estimates come from rasterising the region at block
                                  and sub-block resolution, strip by strip.
    BlockChipper.chips(bx, by)    one block's chips: exactly plan_grid's chips (ids, sizes,
                                  centres, in plan_grid's order) whose centre falls in the
                                  block. A chip belongs to the block holding its centre,
                                  (floor(cx / block_m), floor(cy / block_m)).
    BlockPlan.grid()              every block's chips as one tiling.Grid, in plan_grid's order
                                  (for regions small enough to hold in memory).

The chips of every block together are plan_grid's chips, because both ask the same question
of the same lattice (core.lattice). A chipper is built from plain values (the region as WKB),
so a worker process on another machine plans its own block.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, ogr
from pyproj import CRS

from . import lattice, tiling
from .errors import UserError
from .gdal_mode import gdal_exceptions

SUBCELLS = 8  # per block side: a block's share of the region is estimated on 8 x 8 cells
STRIP_CELLS = 2_000_000  # sub-cells rasterised at a time: memory stays a few MB at any size


@dataclass
class BlockChips:
    """One block's chips, as arrays (tiling.Grid's columns)."""

    ids: np.ndarray
    sizes: np.ndarray
    cx: np.ndarray
    cy: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class BlockChipper:
    """Plans the chips of one block at a time from the region (grid CRS, WKB)."""

    def __init__(
        self, area_wkb: bytes, chip_sizes: tuple[float, ...], overlap: float, block_m: float
    ):
        self.chip_sizes = tuple(float(s) for s in chip_sizes)
        self.overlap, self.block_m = float(overlap), float(block_m)
        self._area_wkb = bytes(area_wkb)
        self._scaled: dict[int, tuple[ogr.Geometry, tuple[int, int, int, int]]] = {}

    def _area_k(self, si: int) -> tuple[ogr.Geometry, tuple[int, int, int, int]]:
        """The region in lattice units of size class `si`, and its lattice bounds (once)."""
        if si not in self._scaled:
            stride = self.chip_sizes[si] * (1 - self.overlap)
            area = ogr.CreateGeometryFromWkb(self._area_wkb)
            xmin, xmax, ymin, ymax = area.GetEnvelope()
            k = (
                math.ceil(xmin / stride),
                math.floor(xmax / stride),
                math.ceil(ymin / stride),
                math.floor(ymax / stride),
            )
            self._scaled[si] = (lattice.scaled(area, stride), k)
        return self._scaled[si]

    def lattice(
        self, bx: int, by: int, inside: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(size class, kx, ky) of the block's chips, in plan_grid's order. `inside`: the
        plan found the block wholly inside the region (its whole lattice, nothing to ask)."""
        B = self.block_m
        parts = []
        for si, size in enumerate(self.chip_sizes):
            stride = size * (1 - self.overlap)
            area_k, (kx0, kx1, ky0, ky1) = self._area_k(si)
            # The block's lattice columns and rows, one more each side: ownership is decided
            # below on the centres exactly as plan_grid computes them.
            a, b = (
                max(kx0, math.floor(bx * B / stride) - 1),
                min(kx1, math.ceil((bx + 1) * B / stride) + 1),
            )
            c, d = (
                max(ky0, math.floor(by * B / stride) - 1),
                min(ky1, math.ceil((by + 1) * B / stride) + 1),
            )
            if b < a or d < c:
                continue
            if inside:
                rows, cols = np.nonzero(np.ones((d - c + 1, b - a + 1), bool))
            else:
                rows, cols = np.nonzero(lattice.mask(area_k, a, b, c, d))
            kx, ky = a + cols, d - rows
            own = (np.floor(kx * stride / B) == bx) & (np.floor(ky * stride / B) == by)
            parts.append((np.full(int(own.sum()), si, np.int64), kx[own], ky[own]))
        if not parts:
            return tuple(np.zeros(0, np.int64) for _ in range(3))  # type: ignore[return-value]
        return tuple(np.concatenate(p).astype(np.int64) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    def chips(self, bx: int, by: int, inside: bool = False) -> BlockChips:
        si, kx, ky = self.lattice(bx, by, inside)
        return _chips(si, kx, ky, self.chip_sizes, self.overlap)


def _chips(si, kx, ky, chip_sizes, overlap) -> BlockChips:
    strides = np.asarray(chip_sizes, np.float64) * (1 - overlap)
    ids = (
        np.concatenate(
            [tiling._chip_id(s, kx[si == s], ky[si == s]) for s in range(len(chip_sizes))]
        )
        if len(si)
        else np.zeros(0, np.int64)
    )
    # Centres as plan_grid computes them (lattice index times stride, size class by class).
    order = np.argsort(si, kind="stable")
    si, kx, ky = si[order], kx[order], ky[order]
    return BlockChips(
        ids=ids.astype(np.int64),
        sizes=np.asarray(chip_sizes, np.float64)[si],
        cx=kx * strides[si],
        cy=ky * strides[si],
    )


@dataclass
class BlockPlan:
    """The blocks of a region: block (bx, by) covers [bx, bx + 1) x [by, by + 1) * block_m."""

    crs: CRS
    chip_sizes: tuple[float, ...]
    overlap: float
    block_m: float
    area_wkb: bytes  # the region inside the raster, in `crs`
    area_m2: float
    lonlat_bounds: tuple[float, float, float, float]
    bx: np.ndarray  # int64 per block
    by: np.ndarray
    estimated: np.ndarray  # int64 chips per block (estimated)
    inside: np.ndarray  # bool per block: wholly inside the region (the boundary misses it)
    _chipper: BlockChipper | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.bx)

    @property
    def names(self) -> list[str]:
        return [f"{x}_{y}" for x, y in zip(self.bx.tolist(), self.by.tolist(), strict=True)]

    @property
    def estimated_chips(self) -> int:
        return int(self.estimated.sum())

    @property
    def region_wkt(self) -> str:
        return ogr.CreateGeometryFromWkb(self.area_wkb).ExportToWkt()

    def block_bounds(self) -> np.ndarray:
        """[n, 4] (xmin, ymin, xmax, ymax) of each block in `crs`."""
        B = self.block_m
        return np.stack([self.bx * B, self.by * B, (self.bx + 1) * B, (self.by + 1) * B], 1)

    def bounds(self) -> tuple[float, float, float, float]:
        """What a chip reader must cover: the region's extent and a chip's size around it."""
        xmin, xmax, ymin, ymax = ogr.CreateGeometryFromWkb(self.area_wkb).GetEnvelope()
        m = max(self.chip_sizes)
        return xmin - m, ymin - m, xmax + m, ymax + m

    def signature(self) -> dict:
        """What identifies this plan without its chips (for resume)."""
        return {
            "crs": self.crs.to_string(),
            "chip_sizes": list(self.chip_sizes),
            "overlap": self.overlap,
            "block_m": self.block_m,
            "blocks": len(self),
            "estimated_chips": self.estimated_chips,
            "region_sha256": hashlib.sha256(self.area_wkb).hexdigest()[:16],
        }

    def chipper(self) -> BlockChipper:
        if self._chipper is None:
            self._chipper = BlockChipper(self.area_wkb, self.chip_sizes, self.overlap, self.block_m)
        return self._chipper

    def chips(self, i: int) -> BlockChips:
        return self.chipper().chips(int(self.bx[i]), int(self.by[i]), bool(self.inside[i]))

    def grid(self) -> tiling.Grid:
        """All blocks' chips as one grid, in plan_grid's order (size class, rows from the
        north, columns from the west). Holds every chip: for regions of up to millions."""
        parts = [
            self.chipper().lattice(int(x), int(y), bool(w))
            for x, y, w in zip(self.bx, self.by, self.inside, strict=True)
        ]
        si, kx, ky = (
            (np.concatenate(p) for p in zip(*parts, strict=True))
            if parts
            else (np.zeros(0, np.int64),) * 3
        )
        order = np.lexsort((kx, -ky, si))
        c = _chips(si[order], kx[order], ky[order], self.chip_sizes, self.overlap)
        return tiling.Grid(
            crs=self.crs,
            chip_sizes=self.chip_sizes,
            overlap=self.overlap,
            ids=c.ids,
            sizes=c.sizes,
            cx=c.cx,
            cy=c.cy,
            region_wkt=self.region_wkt,
            lonlat_bounds=self.lonlat_bounds,
        )


@gdal_exceptions()
def plan_blocks(
    ds: gdal.Dataset,
    region: tiling.Region | None = None,
    chip_sizes: tuple[float, ...] = tiling.DEFAULT_CHIP_SIZES,
    overlap: float = tiling.DEFAULT_OVERLAP,
    block_m: float = 2000.0,
    source: str = "raster",
) -> BlockPlan:
    """The blocks of `block_m` metres that intersect `region` (default: the whole raster),
    each with its estimated chips. Reads no pixels and enumerates no chip."""
    if not block_m > 0:
        raise UserError(f"block size must be positive metres, got {block_m:g}")
    grid_crs, area, region_ll = tiling.grid_area(ds, region, chip_sizes, overlap, source)
    B = float(block_m)
    xmin, xmax, ymin, ymax = area.GetEnvelope()
    # A hair of slack: a region edge lying exactly on a block line may own a chip on it.
    eps = B * 1e-6
    bx0, bx1 = math.floor((xmin - eps) / B), math.floor((xmax + eps) / B)
    by0, by1 = math.floor((ymin - eps) / B), math.floor((ymax + eps) / B)
    nx = bx1 - bx0 + 1
    edge_x, edge_y = _boundary_blocks(area, B, eps)
    per_strip = max(1, STRIP_CELLS // (nx * SUBCELLS * SUBCELLS))
    bxs, bys, ests, insides = [], [], [], []
    for top in range(by1, by0 - 1, -per_strip):
        bottom = max(by0, top - per_strip + 1)
        ny, s = top - bottom + 1, SUBCELLS
        # Which share of each block the region covers, from 8 x 8 cell centres: whole
        # blocks inside come out 1, blocks outside 0; the boundary's blocks are added below.
        cells = _burn(area, bx0 * B, (top + 1) * B, B / s, nx * s, ny * s)
        share = cells.reshape(ny, s, nx, s).mean(axis=(1, 3))
        edge = np.zeros((ny, nx), bool)
        here = (edge_y >= bottom) & (edge_y <= top)
        edge[top - edge_y[here], edge_x[here] - bx0] = True
        rows, cols = np.nonzero(edge | (share > 0))
        insides.append(~edge[rows, cols])
        full = _lattice_points(bx0, bx1, bottom, top, B, chip_sizes, overlap)
        est = np.rint(share[rows, cols] * full[top - bottom - rows, cols]).astype(np.int64)
        bxs.append(bx0 + cols)
        bys.append(top - rows)
        ests.append(np.maximum(est, 1))  # a block the boundary crosses may hold a chip
    e = region_ll.GetEnvelope()
    return BlockPlan(
        crs=grid_crs,
        chip_sizes=tuple(float(s) for s in chip_sizes),
        overlap=float(overlap),
        block_m=B,
        area_wkb=bytes(area.ExportToWkb(ogr.wkbNDR)),
        area_m2=float(area.GetArea()),
        lonlat_bounds=(e[0], e[2], e[1], e[3]),
        bx=np.concatenate(bxs).astype(np.int64),
        by=np.concatenate(bys).astype(np.int64),
        estimated=np.concatenate(ests),
        inside=np.concatenate(insides),
    )


def _lattice_points(bx0, bx1, by0, by1, B, chip_sizes, overlap) -> np.ndarray:
    """[rows from by0, columns from bx0]: lattice points of all sizes in each whole block."""
    out = np.zeros((by1 - by0 + 1, bx1 - bx0 + 1), np.int64)
    for size in chip_sizes:
        stride = size * (1 - overlap)
        # Points k of block b: b * B <= k * stride < (b + 1) * B.
        ys = np.diff(np.ceil(np.arange(by0, by1 + 2) * B / stride).astype(np.int64))
        xs = np.diff(np.ceil(np.arange(bx0, bx1 + 2) * B / stride).astype(np.int64))
        out += np.outer(ys, xs)
    return out


def _boundary_blocks(area: ogr.Geometry, B: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(bx, by) of every block the region's boundary may touch (a superset, closed blocks).

    The boundary is cut into pieces shorter than half a block, so a piece spans at most 2 x 2
    blocks: all of them are taken (a piece cutting a block's corner touches it without
    ending in it). GDAL's ALL_TOUCHED is not used: it misses slivers thinner than about a
    hundredth of a pixel, and such a sliver can hold a chip."""
    g = area.Clone()
    g.Segmentize(B / 2)
    keys = []
    for xy in lattice.coordinates(g):
        a, b = (xy[:-1], xy[1:]) if len(xy) > 1 else (xy, xy)
        lo = np.floor((np.minimum(a, b) - eps) / B).astype(np.int64)
        hi = np.floor((np.maximum(a, b) + eps) / B).astype(np.int64)
        for x in (lo[:, 0], hi[:, 0]):
            for y in (lo[:, 1], hi[:, 1]):
                keys.append(np.stack([x, y], 1))
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    both = np.unique(np.concatenate(keys), axis=0)
    return both[:, 0], both[:, 1]


def _burn(area, x0, y_top, cell, nx, ny) -> np.ndarray:
    """bool [ny, nx]: cells of `cell` metres from (x0, y_top) whose centre the region covers."""
    ds = gdal.GetDriverByName("MEM").Create("", nx, ny, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((x0, cell, 0.0, y_top, 0.0, -cell))
    return lattice.burn(ds, area)
