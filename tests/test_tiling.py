"""The chip grid: counts, sizes in metres, CRS choice, reprojection, nodata and blank chips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import textured, write_geotiff
from osgeo import gdal
from pyproj import CRS

from geobridge_qgis.core import tiling
from geobridge_qgis.core.errors import UserError


def expected_count(xmin, ymin, xmax, ymax, size, overlap):
    t = size * (1 - overlap)
    nx = math.floor(xmax / t) - math.ceil(xmin / t) + 1
    ny = math.floor(ymax / t) - math.ceil(ymin / t) + 1
    return nx * ny


def test_grid_counts_and_sizes(utm_raster):
    ds = tiling.open_raster(utm_raster)
    grid = tiling.plan_grid(ds, chip_sizes=(100, 150), overlap=0.5)
    bounds = (500010, 5500390, 500610, 5500990)
    assert grid.crs == CRS.from_epsg(32633)  # projected in metres: the raster's own CRS
    for size in (100, 150):
        sel = grid.sizes == size
        assert sel.sum() == expected_count(*bounds, size, 0.5)
        stride = size / 2
        assert np.allclose(np.mod(grid.cx[sel], stride), 0)
        assert np.allclose(np.mod(grid.cy[sel], stride), 0)
    assert len(np.unique(grid.ids)) == len(grid)
    poly = tiling.chip_polygon(grid.cx[0], grid.cy[0], grid.sizes[0])
    assert poly[1][0] - poly[0][0] == grid.sizes[0] and poly[2][1] - poly[1][1] == grid.sizes[0]
    # Less overlap, fewer chips; the same chip keeps its id in a sub-region.
    assert len(tiling.plan_grid(ds, chip_sizes=(100,), overlap=0.0)) == expected_count(
        *bounds, 100, 0.0
    )
    sub = tiling.plan_grid(ds, tiling.Region.from_bbox("500200,5500600,500400,5500800"))
    assert set(sub.ids) < set(grid.ids) and len(sub) < len(grid)


@pytest.mark.parametrize("epsg", [4326, 3857])
def test_degrees_and_web_mercator_get_utm_chips_in_true_metres(epsg, utm_raster, tmp_path):
    warped = tmp_path / f"warped_{epsg}.tif"
    gdal.Warp(str(warped), str(utm_raster), dstSRS=f"EPSG:{epsg}", resampleAlg="bilinear")
    ds = tiling.open_raster(warped)
    grid = tiling.plan_grid(ds, chip_sizes=(100,))
    assert grid.crs == CRS.from_epsg(32633)  # the UTM zone of the centre, not the raster's
    utm = tiling.plan_grid(tiling.open_raster(utm_raster), chip_sizes=(100,))
    common = np.intersect1d(grid.ids, utm.ids)
    assert len(common) >= 0.6 * len(utm)
    # The same chip read through the warp and straight from the UTM raster looks the same.
    i = int(np.flatnonzero(utm.ids == common[len(common) // 2])[0])
    r_utm = tiling.ChipReader(tiling.open_raster(utm_raster), utm.crs, (0, 0, 1e9, 1e9))
    r_w = tiling.ChipReader(ds, grid.crs, (500000, 5500300, 500700, 5501100))
    a = r_utm.read(utm.cx[i], utm.cy[i], 100, 64).astype(float).mean(2)
    b = r_w.read(utm.cx[i], utm.cy[i], 100, 64).astype(float).mean(2)
    shifted = r_utm.read(utm.cx[i] + 50, utm.cy[i], 100, 64).astype(float).mean(2)
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.9 and corr > np.corrcoef(a.ravel(), shifted.ravel())[0, 1] + 0.1


def test_nodata_and_blank_chips_are_skipped(tmp_path):
    img = textured(400, 400)
    img[:, :200] = 0  # west half nodata
    img[:200, 200:] = 180  # north-east quarter blank (one colour)
    path = write_geotiff(tmp_path / "holes.tif", img, nodata=0)
    ds = tiling.open_raster(path)
    grid = tiling.plan_grid(ds, chip_sizes=(50,), overlap=0.0)
    reader = tiling.ChipReader(ds, grid.crs, (0, 0, 1e9, 1e9))
    x_mid, y_mid = 500010 + 100, 5500990 - 100
    kept = {"nodata": [], "blank": [], "textured": []}
    for x, y, s in zip(grid.cx, grid.cy, grid.sizes, strict=True):
        west, east = x + s / 2 <= x_mid, x - s / 2 >= x_mid
        north, south = y - s / 2 >= y_mid, y + s / 2 <= y_mid
        inside = x + s / 2 <= 500210 and y - s / 2 >= 5500790
        kind = (
            "nodata"
            if west
            else "blank"
            if east and north
            else "textured"
            if east and south
            else None
        )
        if kind and inside:
            kept[kind].append(reader.read(x, y, s, 32) is not None)
    assert kept["nodata"] and not any(kept["nodata"])
    assert kept["blank"] and not any(kept["blank"])
    assert kept["textured"] and all(kept["textured"])


def test_bad_rasters_and_regions(tmp_path, utm_raster):
    plain = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(plain), 10, 10, 3, gdal.GDT_Byte)
    with pytest.raises(UserError, match="has no georeference"):
        tiling.open_raster(plain)
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster")
    with pytest.raises(UserError, match=r"notes\.tif: GDAL cannot read"):
        tiling.open_raster(notes)
    ds = tiling.open_raster(utm_raster)
    with pytest.raises(UserError, match="does not overlap the raster"):
        tiling.plan_grid(ds, tiling.Region.from_bbox("16.5,40.0,16.6,40.1,EPSG:4326"))
    with pytest.raises(UserError, match="empty box"):
        tiling.Region.from_bbox("500300,5500700,500200,5500800")
