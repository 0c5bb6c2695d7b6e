"""A nadir aerial image or orthophoto goes through the satellite tower: a crop of the indexed
raster itself, used as a query with --view satellite, is found within 10 m."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import ROOT, run_cli
from osgeo import gdal
from PIL import Image

DEMO = ROOT / "resources" / "demo"
SAT = DEMO / "world" / "satellite.tif"


@pytest.fixture(scope="module")
def demo_corner_index(tmp_path_factory):
    if not SAT.is_file():
        pytest.skip("resources/demo/world is not there")
    x0, _, _, y1, _, _ = gdal.Open(str(SAT)).GetGeoTransform()
    # 500 m x 500 m of the demo world, a few hundred metres in from its corner.
    box = (x0 + 300, y1 - 800, x0 + 800, y1 - 300)
    out = tmp_path_factory.mktemp("sat") / "index"
    r = run_cli("geobridge_qgis", "index", "--bundle", DEMO / "bundle", "--raster", SAT,
                "--bbox", ",".join(f"{v:.1f}" for v in box), "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # No dataset kept: one released after QGIS shut GDAL down crashes the interpreter.
    return out, box


def test_crop_of_the_raster_is_found_with_the_satellite_tower(demo_corner_index, tmp_path):
    index, (bx0, _, _, by1) = demo_corner_index
    ds = gdal.Open(str(SAT))
    x0, res, _, y1, _, _ = ds.GetGeoTransform()
    side = 120.0  # metres, between the two chip sizes and off the chip lattice
    n = int(side / res)
    cx, cy = bx0 + 233.7, by1 - 271.3
    col, row = int((cx - side / 2 - x0) / res), int((y1 - (cy + side / 2)) / res)
    crop = ds.ReadAsArray(col, row, n, n)[:3].transpose(1, 2, 0)
    ds = None
    photo = tmp_path / "ortho_crop.png"
    Image.fromarray(np.ascontiguousarray(crop)).save(photo)
    true_x, true_y = x0 + (col + n / 2) * res, y1 - (row + n / 2) * res

    r = run_cli("geobridge_qgis", "locate", "--bundle", DEMO / "bundle", "--index", index,
                "--photo", photo, "--view", "satellite", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)[0]
    assert math.hypot(best["x"] - true_x, best["y"] - true_y) <= 10.0, best
