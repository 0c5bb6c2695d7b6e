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
    # The common chip nearest the raster's centre (ids sort in Z order, not row by row).
    rows = np.flatnonzero(np.isin(utm.ids, common))
    d = np.hypot(utm.cx[rows] - utm.cx.mean(), utm.cy[rows] - utm.cy.mean())
    i = int(rows[np.argmin(d)])
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


# ---------------------------------------------------------------- kinds of raster


def write_bands(path, bands, kinds, gsd=0.5, origin=(500010.0, 5500990.0), gt=None, dtype=None):
    """A GeoTIFF in UTM 33N from 2-D arrays, each band given its colour interpretation."""
    h, w = bands[0].shape
    dtype = dtype or gdal.GDT_Byte
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, len(bands), dtype)
    ds.SetGeoTransform(gt or (origin[0], gsd, 0, origin[1], 0, -gsd))
    ds.SetProjection(CRS.from_epsg(32633).to_wkt())
    for i, (array, kind) in enumerate(zip(bands, kinds, strict=True), start=1):
        band = ds.GetRasterBand(i)
        band.WriteArray(array)
        band.SetColorInterpretation(kind)
    ds = None
    return path


def same_place(reader_a, reader_b, x, y, size=50.0, px=32) -> float:
    a = reader_a.read(x, y, size, px).astype(float)
    b = reader_b.read(x, y, size, px).astype(float)
    return min(np.corrcoef(a[..., k].ravel(), b[..., k].ravel())[0, 1] for k in range(3))


def test_rotated_raster_is_warped_north_up(tmp_path, utm_raster):
    """A raster with a rotated geotransform reads like the north-up raster it was cut from."""
    base = gdal.Open(str(utm_raster)).ReadAsArray()  # [3, 1200, 1200], 0.5 m from (500010, ..)
    theta, r, n = math.radians(25), 0.5, 500
    centre = (500310.0, 5500690.0)
    col_dir = np.array([math.cos(theta), math.sin(theta)]) * r
    row_dir = np.array([math.sin(theta), -math.cos(theta)]) * r
    origin = np.array(centre) - (col_dir + row_dir) * n / 2
    gt = (origin[0], col_dir[0], row_dir[0], origin[1], col_dir[1], row_dir[1])
    rows, cols = np.mgrid[0:n, 0:n] + 0.5
    x = origin[0] + cols * col_dir[0] + rows * row_dir[0]
    y = origin[1] + cols * col_dir[1] + rows * row_dir[1]
    bi = ((5500990.0 - y) / 0.5).astype(int), ((x - 500010.0) / 0.5).astype(int)
    kinds = [gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand]
    path = write_bands(tmp_path / "rotated.tif", [base[k][bi] for k in range(3)], kinds, gt=gt)

    ds = tiling.open_raster(path)
    assert ds.GetGeoTransform()[2] == ds.GetGeoTransform()[4] == 0
    assert tiling.raster_identity(path, ds)["geotransform"] == list(gt)  # the file's own
    grid = tiling.plan_grid(ds, chip_sizes=(50,))
    rotated = tiling.ChipReader(ds, grid.crs, (0, 0, 0, 0))
    straight = tiling.ChipReader(tiling.open_raster(utm_raster), grid.crs, (0, 0, 0, 0))
    assert same_place(rotated, straight, *centre) > 0.9
    a = rotated.read(*centre, 50, 32).astype(float).mean(2).ravel()
    elsewhere = straight.read(centre[0], centre[1] + 25, 50, 32).astype(float).mean(2).ravel()
    assert np.corrcoef(a, elsewhere)[0, 1] < 0.8
    # The corners of the north-up box lie outside the rotated raster: nodata, not black chips.
    xmin, _, _, ymax = tiling.raster_bounds(ds, grid.crs)
    assert rotated.read(xmin + 25, ymax - 25, 50, 32) is None


def test_sixteen_bit_bgr_with_alpha_is_stretched_in_rgb_order(tmp_path):
    img = textured(300, 300, seed=5)
    alpha = np.full((300, 300), 65535, np.uint16)
    alpha[:, :100] = 0
    to16 = lambda a: (a.astype(np.uint16) * 37 + 2000).astype(np.uint16)  # noqa: E731
    kinds = [gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand, gdal.GCI_AlphaBand]
    bands = [to16(img[..., 2]), to16(img[..., 1]), to16(img[..., 0]), alpha]
    path = write_bands(tmp_path / "bgra16.tif", bands, kinds, dtype=gdal.GDT_UInt16)
    eight = write_geotiff(tmp_path / "rgb8.tif", img)
    crs = CRS.from_epsg(32633)
    reader = tiling.ChipReader(tiling.open_raster(path), crs, (0, 0, 0, 0))
    assert reader.bands == [3, 2, 1] and reader.scale is not None and len(reader.scale) == 3
    plain = tiling.ChipReader(tiling.open_raster(eight), crs, (0, 0, 0, 0))
    x, y = 500010 + 110, 5500990 - 75
    assert same_place(reader, plain, x, y) > 0.95
    chip = reader.read(x, y, 50, 32)
    assert chip.min() < 40 and chip.max() > 215  # stretched to the 8-bit range
    assert reader.read(500010 + 25, y, 50, 32) is None  # under alpha 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgra16.tif", "rgb8.tif"]  # no .aux.xml


def test_float_dem_with_nan_and_nodata_reads_as_grey(tmp_path):
    dem = textured(300, 300, seed=6)[..., 0].astype(np.float32) * 3.5 - 80
    dem[:, :120] = np.nan
    dem[:120, 120:] = -9999
    path = write_bands(tmp_path / "dem.tif", [dem], [gdal.GCI_GrayIndex], dtype=gdal.GDT_Float32)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.GetRasterBand(1).SetNoDataValue(-9999)
    ds = None
    reader = tiling.ChipReader(tiling.open_raster(path), CRS.from_epsg(32633), (0, 0, 0, 0))
    chip = reader.read(500010 + 110, 5500990 - 110, 50, 32)
    assert chip is not None and (chip[..., 0] == chip[..., 1]).all() and chip.std() > 20
    assert reader.read(500010 + 30, 5500990 - 110, 50, 32) is None  # NaN
    assert reader.read(500010 + 110, 5500990 - 30, 50, 32) is None  # nodata


def test_paletted_raster_with_nodata_index(tmp_path):
    idx = (textured(200, 200, seed=7)[..., 0] // 64).astype(np.uint8)  # 0..3
    idx[:, :100] = 9
    path = write_bands(tmp_path / "pal.tif", [idx], [gdal.GCI_PaletteIndex])
    ds = gdal.Open(str(path), gdal.GA_Update)
    table = gdal.ColorTable()
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)] + [(0, 0, 0)] * 6
    for i, c in enumerate(colours):
        table.SetColorEntry(i, (*c, 255))
    ds.GetRasterBand(1).SetColorTable(table)
    ds.GetRasterBand(1).SetNoDataValue(9)
    ds = None
    view = tiling.open_raster(path)
    assert view.RasterCount == 4  # RGBA: the nodata index becomes transparent
    reader = tiling.ChipReader(view, CRS.from_epsg(32633), (0, 0, 0, 0))
    # 20 m chip of 40 pixels read at 40 px: exactly the table's colours.
    chip = reader.read(500010 + 70, 5500990 - 50, 20, 40)
    lut = np.array(colours, np.uint8)
    assert np.array_equal(chip, lut[idx[80:120, 120:160]])
    assert reader.read(500010 + 20, 5500990 - 50, 20, 40) is None


def test_coarse_and_pictureless_rasters_are_refused(tmp_path):
    img = textured(100, 100)
    coarse = write_geotiff(tmp_path / "coarse.tif", img, gsd=10.0)
    ds = tiling.open_raster(coarse)
    with pytest.raises(UserError, match=r"coarse\.tif: its pixels are about 10 m .* too coarse "
                       r"for 100 m chips .* use chips of 160 m or more"):  # fmt: skip
        tiling.plan_grid(ds, chip_sizes=(100, 150), source=str(coarse))
    assert len(tiling.plan_grid(ds, chip_sizes=(160, 200)))
    flat = write_geotiff(tmp_path / "flat.tif", (img > 128).astype(np.uint8))
    with pytest.raises(UserError, match=r"flat\.tif: its values span only 0 to 1 of 0\.\.255"):
        tiling.open_raster(flat)
    grey = write_geotiff(tmp_path / "grey.tif", np.full_like(img, 90))
    with pytest.raises(UserError, match=r"grey\.tif: every pixel has the same colour values"):
        tiling.open_raster(grey)
