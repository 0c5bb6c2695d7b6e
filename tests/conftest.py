"""Shared fixtures: a tiny GeoBridge with random weights, its checkpoint and its bundle.

Everything is real: the checkpoint is written with torch.save, the bundle by the exporter, and
sessions are onnxruntime's. The `tiny` preset keeps each export to a second or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Checksums are cached per user; tests must not read or write the real cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


def run_cli(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from model_export import model as M

    torch.manual_seed(0)
    return M.GeoBridge(M.preset_config("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    from model_export import model as M
    from model_export.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(
        tiny_checkpoint,
        out,
        M.preset_config("tiny"),
        "preset:tiny",
        precision="fp32",  # one precision keeps the shared fixture fast; test_precision has all
        name="tiny",
        log=lambda _: None,
    )
    return out


def write_geotiff(path: Path, img, origin=(500010.0, 5500990.0), gsd=0.5, epsg=32633, nodata=None):
    """A north-up GeoTIFF of an RGB uint8 array [H, W, 3]."""
    from osgeo import gdal, osr

    h, w = img.shape[:2]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, 3, gdal.GDT_Byte, ["TILED=YES"])
    ds.SetGeoTransform((origin[0], gsd, 0, origin[1], 0, -gsd))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(img[..., b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return path


def textured(h: int, w: int, seed: int = 0, blob: int = 40):
    """Smooth random colour texture: every 50 m window looks different."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (h // blob + 2, w // blob + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w + 2 * blob, h + 2 * blob), Image.BICUBIC))
    img = img[blob : blob + h, blob : blob + w].astype(int) + rng.integers(-15, 16, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def utm_raster(tmp_path_factory) -> Path:
    """600 m x 600 m at 0.5 m/px in UTM 33N, corners off the chip lattice."""
    return write_geotiff(tmp_path_factory.mktemp("raster") / "utm.tif", textured(1200, 1200))


@pytest.fixture(scope="session")
def tiny_index(tiny_bundle, utm_raster, tmp_path_factory) -> Path:
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.index import build_index

    out = tmp_path_factory.mktemp("indexes") / "utm"
    build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, out)
    return out
