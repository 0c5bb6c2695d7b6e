"""The engine and the exporter leave the process as they found it: GDAL's error mode (QGIS and
its other plugins share it) and the root logger.

Each check runs in a fresh interpreter, because pytest itself configures the root logger and
other tests may already have imported the modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, textured, write_geotiff

SCRIPT = r"""
import importlib, json, logging, pkgutil, sys

from osgeo import gdal, ogr, osr

raster, junk, onnx_in, onnx_out, host = sys.argv[1:]
if host == "exceptions":
    for m in (gdal, ogr, osr):
        m.UseExceptions()


def state():
    root = logging.getLogger()
    return {
        "gdal": gdal.GetUseExceptions(), "ogr": ogr.GetUseExceptions(),
        "osr": osr.GetUseExceptions(), "root_level": root.level,
        "root_handlers": [type(h).__name__ for h in root.handlers],
    }


states = {"start": state()}
import geobridge_qgis.core
import model_export
import synthworld

modules = []
for package in (geobridge_qgis.core, model_export, synthworld):
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "__main__":
            importlib.import_module(f"{package.__name__}.{info.name}")
            modules.append(info.name)
states["imported"] = state()

from geobridge_qgis.core import tiling
from geobridge_qgis.core.errors import UserError

ds = tiling.open_raster(raster)
grid = tiling.plan_grid(ds, chip_sizes=(50,))
reader = tiling.ChipReader(ds, grid.crs, (0, 0, 0, 0))
chips = sum(reader.read(x, y, 50, 32) is not None for x, y in zip(grid.cx, grid.cy))
try:
    tiling.open_raster(junk)
    refusal = None
except UserError as e:  # GDAL's failure inside the engine still raised and became one line
    refusal = str(e)
states["engine"] = state()

from model_export.export import convert_precision

convert_precision(onnx_in, onnx_out, "int8")
states["int8"] = state()
print(json.dumps({"states": states, "modules": modules, "chips": chips, "refusal": refusal}))
"""


def tiny_onnx(path):
    """One MatMul with a weight initialiser: something the int8 quantiser works on."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).random((8, 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("host", ["default", "exceptions"])
def test_engine_and_exporter_leave_gdal_mode_and_root_logger_alone(host, tmp_path):
    raster = write_geotiff(tmp_path / "r.tif", textured(200, 200))
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    onnx_in = tiny_onnx(tmp_path / "fp32.onnx")
    args = [raster, junk, onnx_in, tmp_path / "int8.onnx", host]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    states = out["states"]
    assert {"tiling", "gdal_mode", "results", "index", "export", "synth"} <= set(out["modules"])
    assert out["chips"] > 0 and "junk.tif: GDAL cannot read it" in out["refusal"]
    on = int(host == "exceptions")
    assert states["start"] == {
        "gdal": on, "ogr": on, "osr": on, "root_level": 30, "root_handlers": []
    }  # fmt: skip
    for step in ("imported", "engine", "int8"):
        assert states[step] == states["start"], step
    assert (tmp_path / "int8.onnx").exists()
