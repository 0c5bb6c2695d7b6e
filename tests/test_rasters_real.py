"""Real GeoTIFFs from other projects, each indexed or refused with one line by the real CLI.

The files live in ../shared/realdata/geotiff/ (PROVENANCE.md there says where each comes from)
and are read in place, never copied here. What each one is, measured with GDAL: a Landsat RGB
at 300 m pixels, a "hillshade" whose valid pixels are all 0 (the rest nodata 255), a 0/1 world
land mask, a 16-bit RGBA whose colour bands are constant 10000, two paletted rasters (one
3 km land-cover map, one 25x24 rotated raster of one white palette entry), a drone orthophoto
RGBA at 0.5 m and an Int16 DEM at 1 arc-second.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import ROOT, run_cli
from osgeo import gdal
from pyproj import CRS

from geobridge_qgis.core import tiling

REAL = ROOT.parent / "shared" / "realdata" / "geotiff"
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real rasters not found at {REAL} (CI has ../shared beside it)"
)

# At the default chips (100 m and 150 m): None = indexed, else words of the one refusal line.
AT_DEFAULTS = {
    "exiftool_GeoTiff_paletted.tif": "same colour (palette entry 255, RGB (255, 255, 255))",
    "openathena_S1008521_dem.tiff": "too coarse for 100 m chips",
    "rasterio_RGB.byte.tif": "too coarse for 100 m chips",
    "rasterio_RGBA.uint16.tif": "same colour values (10000, 10000, 10000)",
    "rasterio_shade.tif": "every pixel that is not nodata (255) has the value 0",
    "rasterio_world.byte.tif": "values span only 0 to 1 of 0..255",
    "riocogeo_image_colormap.tif": "too coarse for 100 m chips",
    "webodm_orthophoto.tif": None,
}
# The coarse ones: ground pixel size in metres (PROVENANCE.md, and the LAEA map's pixel as
# measured in its UTM grid) and the chip size the second run uses.
COARSE = {
    "openathena_S1008521_dem.tiff": (30.9, 1000),
    "rasterio_RGB.byte.tif": (300.0, 20000),
    "riocogeo_image_colormap.tif": (3050.0, 150000),
}
PALETTED = REAL / "riocogeo_image_colormap.tif"


def listing() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in REAL.iterdir()}


def index_cli(tiny_bundle, raster, out, *extra):
    before = listing()
    proc = run_cli(
        "geobridge_qgis", "index", "--bundle", tiny_bundle, "--raster", raster, "--out", out,
        "--max-chips", "5000", *extra,
    )  # fmt: skip
    # Reading a raster writes nothing beside it (no GDAL .aux.xml statistics).
    assert listing() == before
    return proc


def assert_indexed(proc, out):
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["count"] > 0
    return manifest


def test_the_real_rasters_are_all_here():
    assert set(AT_DEFAULTS) == {p.name for p in REAL.glob("*.tif*")}


@pytest.mark.parametrize("name", sorted(AT_DEFAULTS))
def test_indexed_or_refused_with_one_line_at_default_chips(name, tiny_bundle, tmp_path):
    raster, out = REAL / name, tmp_path / "index"
    proc = index_cli(tiny_bundle, raster, out)
    expected = AT_DEFAULTS[name]
    if expected is None:
        assert_indexed(proc, out)
        return
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert str(raster) in lines[0] and expected in lines[0], lines[0]
    assert not out.exists() and not out.with_name("index.partial").exists()
    if name in COARSE:
        # The advice names the smallest chip that gets 16 pixels across, rounded up.
        pixel, _ = COARSE[name]
        advised = float(re.search(r"use chips of (\d+) m or more", lines[0]).group(1))
        assert 16 * pixel * 0.97 <= advised <= 16 * pixel * 1.1


@pytest.mark.parametrize("name", sorted(COARSE))
def test_coarse_rasters_are_indexed_at_chips_their_pixels_allow(name, tiny_bundle, tmp_path):
    _, chip = COARSE[name]
    out = tmp_path / "index"
    proc = index_cli(tiny_bundle, REAL / name, out, "--chip-sizes", str(chip))
    manifest = assert_indexed(proc, out)
    assert manifest["grid"]["chip_sizes"] == [chip]


def palette_lut(ds: gdal.Dataset) -> np.ndarray:
    table = ds.GetRasterBand(1).GetColorTable()
    return np.array([table.GetColorEntry(i)[:3] for i in range(table.GetCount())], np.uint8)


def test_paletted_chips_come_out_in_the_colours_of_the_table():
    raw = gdal.Open(str(PALETTED))
    lut, indices = palette_lut(raw), raw.GetRasterBand(1).ReadAsArray()
    ds = tiling.open_raster(PALETTED)
    assert ds.RasterCount == 3  # expanded to RGB
    assert tiling.raster_identity(PALETTED, ds)["bands"] == 1  # the file's own numbers

    # Read straight in the raster's CRS, one chip pixel per raster pixel: exactly the table.
    gt = ds.GetGeoTransform()
    n = 20
    blocks = [
        (r, c)
        for r in range(0, indices.shape[0] - n, n)
        for c in range(0, indices.shape[1] - n, n)
        if len(np.unique(indices[r : r + n, c : c + n])) >= 4
    ]
    assert blocks
    reader = tiling.ChipReader(ds, CRS.from_wkt(ds.GetProjection()), (0, 0, 0, 0))
    for r, c in blocks[:: max(1, len(blocks) // 10)]:
        cx, cy = gt[0] + (c + n / 2) * gt[1], gt[3] + (r + n / 2) * gt[5]
        chip = reader.read(cx, cy, n * gt[1], n)
        assert chip is not None
        assert np.array_equal(chip, lut[indices[r : r + n, c : c + n]])

    # Through the index's own grid (a UTM zone, so warped): chips in colour, not grey.
    grid = tiling.plan_grid(ds, chip_sizes=(150000,))
    assert grid.crs != CRS.from_wkt(ds.GetProjection())
    reader = tiling.ChipReader(ds, grid.crs, tiling.raster_bounds(ds, grid.crs))
    chips = [reader.read(x, y, s, 64) for x, y, s in zip(grid.cx, grid.cy, grid.sizes, strict=True)]
    chips = [c.astype(int) for c in chips if c is not None]
    assert len(chips) > 50
    colour = [
        np.abs(c[..., 0] - c[..., 1]).mean() + np.abs(c[..., 1] - c[..., 2]).mean() for c in chips
    ]
    assert np.median(colour) > 10
