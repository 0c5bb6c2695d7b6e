"""The grid planned block by block: the blocks' chips together are plan_grid's chips exactly,
and a country-sized region is planned into blocks without enumerating its chips."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import ROOT
from osgeo import gdal, osr
from pyproj import CRS

from geobridge_qgis.core import blockplan, tiling
from geobridge_qgis.core.errors import UserError

DEMO_RASTER = ROOT / "resources" / "demo" / "world" / "satellite.tif"


def _empty_raster(epsg: int, origin: tuple[float, float], pixel: float, w: int, h: int):
    """A georeferenced raster of any size that holds no pixels (planning reads none)."""
    ds = gdal.GetDriverByName("VRT").Create("", w, h, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    return ds


def _assert_blocks_make_the_grid(
    ds, region, block_m, chip_sizes=(100.0, 150.0), overlap=0.5, estimate_within=0.1
):
    grid = tiling.plan_grid(ds, region, chip_sizes, overlap)
    plan = blockplan.plan_blocks(ds, region, chip_sizes, overlap, block_m)
    assert plan.crs == grid.crs and len(grid) > 0
    # Block by block: every chip in exactly one block, the one holding its centre.
    ids, cx, cy, sizes = [], [], [], []
    for i in range(len(plan)):
        c = plan.chips(i)
        if plan.inside[i]:  # planned without asking the region: the same chips as asking it
            asked = plan.chipper().chips(int(plan.bx[i]), int(plan.by[i]), inside=False)
            assert np.array_equal(c.ids, asked.ids) and len(c) > 0
        if len(c):
            assert (np.floor(c.cx / block_m) == plan.bx[i]).all()
            assert (np.floor(c.cy / block_m) == plan.by[i]).all()
        ids.append(c.ids)
        cx.append(c.cx)
        cy.append(c.cy)
        sizes.append(c.sizes)
    ids, cx, cy, sizes = (np.concatenate(a) for a in (ids, cx, cy, sizes))
    assert len(ids) == len(grid) == len(np.unique(ids))
    order, ref = np.argsort(ids), np.argsort(grid.ids)
    assert np.array_equal(ids[order], grid.ids[ref])
    assert np.array_equal(cx[order], grid.cx[ref]) and np.array_equal(cy[order], grid.cy[ref])
    assert np.array_equal(sizes[order], grid.sizes[ref])
    # Assembled, the blocks are plan_grid's grid itself, in its order.
    whole = plan.grid()
    assert np.array_equal(whole.ids, grid.ids) and np.array_equal(whole.cx, grid.cx)
    assert whole.signature() == grid.signature() and whole.region_wkt == grid.region_wkt
    # The estimate is near the true count (coarse where blocks are large for the region).
    if estimate_within is not None:
        assert abs(plan.estimated_chips - len(grid)) <= estimate_within * len(grid) + 2 * len(plan)
    return plan, grid


def test_demo_box_in_blocks_equals_the_grid():
    ds = tiling.open_raster(DEMO_RASTER)
    region = tiling.Region.from_bbox("667100,5871600,667700,5872200")
    plan, _ = _assert_blocks_make_the_grid(ds, region, 250.0)
    assert sorted(plan.names) == sorted(
        f"{x}_{y}" for x in (2668, 2669, 2670) for y in (23486, 23487, 23488)
    )
    plan, _ = _assert_blocks_make_the_grid(
        ds, None, 333.3, chip_sizes=(60.0, 90.0, 130.0), overlap=0.3
    )
    assert 0 < plan.inside.sum() < len(plan)


def test_non_rectangular_region_with_a_hole():
    ds = tiling.open_raster(DEMO_RASTER)
    region = tiling.Region.from_wkt(
        "POLYGON((667013.3 5871600.7,667950.1 5871702.2,667800 5872413.9,667333 5872000,"
        "667100.5 5872300.1,667013.3 5871600.7),"
        "(667300 5871800,667400 5871800,667400 5871900,667300 5871800))",
        "EPSG:32632",
    )
    _, grid = _assert_blocks_make_the_grid(ds, region, 250.0)
    # The hole's chips are in no block.
    inside_hole = (grid.cx > 667310) & (grid.cx < 667390) & (grid.cy > 5871810)
    inside_hole &= grid.cy < 5871810 + (grid.cx - 667300) - 10
    assert not inside_hole.any()


@pytest.mark.parametrize("seed", range(8))
def test_random_regions_in_blocks_equal_the_grid(seed):
    """Star-shaped polygons of random vertices, half of them snapped to the 50 m lattice (so
    lattice points lie on their edges), random chip sizes, overlap and block size."""
    ds = tiling.open_raster(DEMO_RASTER)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 11))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(200, 900, n)
    xs = rng.uniform(667000, 669000) + r * np.cos(t)
    ys = rng.uniform(5871000, 5873000) + r * np.sin(t)
    if seed % 2:
        xs, ys = np.round(xs / 50) * 50, np.round(ys / 50) * 50
    ring = ",".join(f"{x!r} {y!r}" for x, y in zip(np.r_[xs, xs[0]], np.r_[ys, ys[0]], strict=True))
    region = tiling.Region.from_wkt(f"POLYGON(({ring}))", "EPSG:32632")
    sizes = tuple(sorted(rng.choice([40.0, 60.0, 100.0, 150.0], 2, replace=False).tolist()))
    overlap = float(rng.choice([0.0, 0.3, 0.5]))
    block_m = float(rng.choice([97.3, 250.0, 1000.0]))
    _assert_blocks_make_the_grid(ds, region, block_m, sizes, overlap, estimate_within=None)


def test_region_across_a_utm_zone_boundary():
    """A lon/lat raster across 12 E (UTM 32 | 33): one grid CRS for the whole region, from
    its centre, and the blocks still make plan_grid's grid."""
    ds = _empty_raster(4326, (11.95, 48.02), 2e-5, 5000, 2000)
    region = tiling.Region.from_wkt(
        "POLYGON((11.9712 48.0013,12.0311 48.0042,12.0409 48.0187,11.9803 48.0151,"
        "11.9712 48.0013))",
        "EPSG:4326",
    )
    plan, grid = _assert_blocks_make_the_grid(ds, region, 1000.0)
    assert grid.crs == CRS.from_epsg(32633)  # the centre is east of 12 E
    lon, _ = grid.lonlat()
    assert (lon < 12).sum() > 500 and (lon > 12).sum() > 500 and len(plan) > 10


def test_country_sized_region_is_planned_without_its_chips():
    # 800 km x 800 km at 0.5 m/px: about 3.7e8 chips at the default sizes, far beyond what
    # plan_grid enumerates.
    ds = _empty_raster(32632, (250_000.0, 6_100_000.0), 0.5, 1_700_000, 1_700_000)
    region = tiling.Region.from_bbox("280010,5250010,1080010,6050010")
    with pytest.raises(UserError, match="lattice points"):
        tiling.plan_grid(ds, region)
    tracemalloc.start()
    try:
        plan = blockplan.plan_blocks(ds, region, block_m=2000.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plan) == 401 * 401
    expected = 800_000**2 * (1 / 50**2 + 1 / 75**2)
    assert abs(plan.estimated_chips - expected) < 0.005 * expected
    assert peak < 64 * 2**20  # a few arrays per block, nothing per chip
    # Any block's chips on demand: an inner block holds its whole lattice, as estimated.
    i = int(np.flatnonzero((plan.bx == 300) & (plan.by == 2800))[0])
    chips = plan.chips(i)
    assert plan.inside[i] and len(chips) == plan.estimated[i] == 40 * 40 + 27 * 27
    box = tiling.Region.from_bbox("599800,5599800,602200,5602200")
    near = tiling.plan_grid(ds, box)
    own = (np.floor(near.cx / 2000) == 300) & (np.floor(near.cy / 2000) == 2800)
    assert np.array_equal(np.sort(chips.ids), np.sort(near.ids[own]))
    sig = plan.signature()
    assert sig["blocks"] == len(plan) and sig["estimated_chips"] == plan.estimated_chips


def test_bad_block_size_is_refused():
    with pytest.raises(UserError, match="block size"):
        blockplan.plan_blocks(tiling.open_raster(DEMO_RASTER), block_m=0)
