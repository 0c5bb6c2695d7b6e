"""Index build: resume after a kill gives the same index, atomic publish, wrong-model refusal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import faiss
import numpy as np
import pytest
from conftest import ROOT, textured, write_geotiff
from osgeo import ogr

from geobridge_qgis.core import tiling
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.encoders import Encoders
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.index import Index, build_index


def vectors(index: Index) -> dict[int, np.ndarray]:
    return {int(i): index.faiss_index.reconstruct(int(i)) for i in index.ids}


@pytest.fixture(scope="module")
def big_raster(tmp_path_factory):
    """1.5 km square at 1 m/px; with 40 m and 60 m chips, ~8000 chips: seconds to build."""
    path = tmp_path_factory.mktemp("big") / "big.tif"
    return write_geotiff(path, textured(1500, 1500, seed=3, blob=30), gsd=1.0)


def test_killed_build_resumes_to_the_same_index(tiny_bundle, big_raster, tmp_path):
    args = ["--bundle", tiny_bundle, "--raster", big_raster, "--chip-sizes", "40,60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "geobridge_qgis", "index", *map(str, args), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    shards = tmp_path / "resumed.partial" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.npz"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = len(list(shards.glob("*.npz")))
    assert saved >= 3 and not out.exists()  # killed mid-build: nothing published
    grid_n = len(tiling.plan_grid(tiling.open_raster(big_raster), chip_sizes=(40, 60)))
    assert saved < grid_n / 256  # really mid-build

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "resumed.partial").exists()

    straight = tmp_path / "straight"
    build_index(Encoders(Bundle.load(tiny_bundle)), big_raster, straight, chip_sizes=(40, 60))
    a, b = Index.open(out), Index.open(straight)
    assert a.manifest["count"] == b.manifest["count"] == grid_n - a.manifest["skipped"]
    va, vb = vectors(a), vectors(b)
    assert va.keys() == vb.keys()
    assert max(np.abs(va[k] - vb[k]).max() for k in va) < 1e-6


def test_cancel_keeps_shards_and_leaves_no_index(tiny_bundle, utm_raster, tmp_path):
    from geobridge_qgis.core.index import Cancelled

    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 1  # after the first shard

    with pytest.raises(Cancelled, match="run again to resume"):
        build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tmp_path / "i",
                    chip_sizes=(40, 60), cancelled=cancelled)  # fmt: skip
    assert not (tmp_path / "i").exists()
    assert len(list((tmp_path / "i.partial" / "shards").glob("*.npz"))) == 1


def test_index_contents(tiny_index, tiny_bundle, utm_raster):
    index = Index.open(tiny_index, Bundle.load(tiny_bundle))
    m = index.manifest
    assert m["factory"] == "IDMap2,Flat" and m["tower"] == "satellite"
    assert m["model_id"] == Bundle.load(tiny_bundle).model_id
    assert m["raster"]["source"] == str(utm_raster.resolve())
    assert m["grid"]["chip_sizes"] == [100.0, 150.0] and m["grid"]["overlap"] == 0.5
    assert (
        isinstance(index.faiss_index, faiss.IndexIDMap2) and index.faiss_index.ntotal == m["count"]
    )
    norms = np.linalg.norm(np.stack(list(vectors(index).values())), axis=1)
    assert np.allclose(norms, 1, atol=1e-5)
    ds = ogr.Open(str(tiny_index / "chips.gpkg"))
    layer = ds.GetLayer("chips")
    assert layer.GetFeatureCount() == m["count"]
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(4)]
    assert names == ["chip_id", "size_m", "lon", "lat"]
    f = layer.GetNextFeature()
    env = f.GetGeometryRef().GetEnvelope()
    assert env[1] - env[0] == pytest.approx(f.GetField("size_m"))


def test_a_chip_comes_back_top1(tiny_index, tiny_bundle, utm_raster):
    bundle = Bundle.load(tiny_bundle)
    index = Index.open(tiny_index, bundle)
    enc = Encoders(bundle)
    reader = tiling.ChipReader(tiling.open_raster(utm_raster), index.crs, (0, 0, 1e9, 1e9))
    for row in (3, len(index.ids) // 2, len(index.ids) - 4):
        img = reader.read(index.cx[row], index.cy[row], index.sizes[row], 32)
        scores, ids = index.search(enc.encode_images("satellite", [img]), 3)
        assert ids[0, 0] == index.ids[row] and scores[0, 0] > 0.9999


def test_index_of_another_model_is_refused(tiny_index, tiny_checkpoint, tmp_path):
    import torch

    from model_export import model as M
    from model_export.export import export_bundle

    torch.manual_seed(7)
    ckpt = tmp_path / "other.pth"
    torch.save(M.GeoBridge(M.preset_config("tiny")).state_dict(), ckpt)
    other = tmp_path / "other"
    export_bundle(ckpt, other, M.preset_config("tiny"), "preset:tiny", name="other",
                  log=lambda _: None)  # fmt: skip
    with pytest.raises(UserError, match=r"built by model tiny .* not by other"):
        Index.open(tiny_index, Bundle.load(other))


def test_half_written_by_something_else_is_refused(tiny_bundle, utm_raster, tmp_path):
    partial = tmp_path / "idx.partial"
    partial.mkdir()
    (partial / "build.json").write_text(json.dumps({"model_id": "someone else"}))
    with pytest.raises(UserError, match="half-written index from another build"):
        build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tmp_path / "idx")
    assert json.loads((partial / "build.json").read_text()) == {"model_id": "someone else"}


def test_chip_cap_refuses_before_reading(tiny_bundle, utm_raster, tmp_path):
    with pytest.raises(UserError, match=r"over the cap of 50 .*narrow the region"):
        build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tmp_path / "i", max_chips=50)
    assert list(tmp_path.iterdir()) == []


def test_index_folder_is_not_overwritten(tiny_bundle, tiny_index, utm_raster):
    before = (tiny_index / "index.json").read_bytes()
    with pytest.raises(UserError, match="already exists"):
        build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tiny_index)
    assert (tiny_index / "index.json").read_bytes() == before


def test_both_index_types_are_built_without_factory_strings(
    tiny_bundle, utm_raster, tmp_path, monkeypatch
):
    """faiss.index_factory parses its string with C++ std::regex, which aborts the QGIS desktop
    process: the engine must build and open each index type without it."""

    def refuse(*args, **kwargs):
        raise RuntimeError("faiss.index_factory must not be called")

    monkeypatch.setattr(faiss, "index_factory", refuse)
    bundle = Bundle.load(tiny_bundle)
    enc = Encoders(bundle)
    q = None
    for flat_max, factory, inner in ((10**6, "IDMap2,Flat", faiss.IndexFlat),
                                     (10, "IVF", faiss.IndexIVFScalarQuantizer)):  # fmt: skip
        out = build_index(enc, utm_raster, tmp_path / factory, flat_max=flat_max)
        index = Index.open(out, bundle)
        assert index.manifest["factory"].startswith(factory)
        fi = index.faiss_index
        assert fi.ntotal == index.manifest["count"] > 10
        if factory == "IVF":  # the ids live in the lists, which stay in the file (mapped)
            assert isinstance(fi, inner) and fi.metric_type == faiss.METRIC_INNER_PRODUCT
            lists = faiss.downcast_InvertedLists(fi.invlists)
            assert isinstance(lists, faiss.OnDiskInvertedLists)
        else:
            assert isinstance(fi, faiss.IndexIDMap2)
            assert isinstance(faiss.downcast_index(fi.index), inner)
            assert faiss.downcast_index(fi.index).metric_type == faiss.METRIC_INNER_PRODUCT
            chip = int(index.ids[len(index.ids) // 2])
            q = fi.reconstruct(chip)[None]  # the same chip's embedding for both
        assert index.search(q, 1)[1][0, 0] == chip
        allowed = index.ids[::7]
        _, ids = index.search(q, 3, allowed)
        assert np.isin(ids, allowed).all() and len(set(ids[0])) == 3
