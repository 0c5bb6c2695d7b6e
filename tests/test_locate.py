"""Locate: merging across scales, probabilities, region limits, the GeoPackage, the CLI."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import run_cli
from osgeo import gdal, ogr
from PIL import Image
from pyproj import CRS

from geobridge_qgis.core import tiling
from geobridge_qgis.core.encoders import normalize
from geobridge_qgis.core.index import Index
from geobridge_qgis.core.locate import locate
from geobridge_qgis.core.photo import read_photo
from geobridge_qgis.core.results import QueryRecord, write_results

UTM = CRS.from_epsg(32633)


def hand_index(embs, boxes) -> Index:
    """A real FAISS index over hand-made embeddings at hand-made chip positions."""
    embs = normalize(np.asarray(embs, np.float32))
    ids = np.arange(10, 10 + len(embs), dtype=np.int64)
    fi = faiss.index_factory(embs.shape[1], "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    fi.add_with_ids(embs, ids)
    cx, cy, sizes = (np.array(v, float) for v in zip(*boxes, strict=True))
    manifest = {"grid": {"crs_wkt": UTM.to_wkt(), "overlap": 0.5}, "factory": "IDMap2,Flat",
                "index_id": "hand", "model_id": "m"}  # fmt: skip
    return Index(Path("."), manifest, fi, ids, sizes, cx, cy, cx * 0, cy * 0)


@pytest.fixture()
def scene():
    rng = np.random.default_rng(0)
    q = normalize(rng.normal(size=(1, 16)).astype(np.float32))
    noise = normalize(rng.normal(size=(8, 16)))
    embs = [q[0] + 0.10 * noise[0], q[0] + 0.25 * noise[1], q[0] + 0.6 * noise[2]]
    embs += [noise[i] for i in range(3, 8)]  # unrelated chips
    boxes = [(501000, 5501000, 100), (501025, 5501000, 150), (503000, 5503000, 100)]
    boxes += [(505000 + 400 * i, 5505000, 100) for i in range(5)]
    return hand_index(embs, boxes), q


def test_overlapping_chips_of_two_scales_merge(scene):
    index, q = scene
    res = locate(index, q, logit_scale=50.0, top_k=3, heatmap=False)
    first, second = res.candidates[0], res.candidates[1]
    assert first.chip_ids == [10, 11] and {first.size_m} == {100.0}
    assert second.chip_ids == [12]
    s = np.array(first.chip_scores)
    w = np.exp(50 * (s - s.max()))
    assert first.x == pytest.approx((w @ [501000, 501025]) / w.sum())
    assert 501000 < first.x < 501025 and first.y == pytest.approx(5501000)
    probs = [c.probability for c in res.candidates]
    assert sum(probs) == pytest.approx(1) and probs == sorted(probs, reverse=True)
    assert [c.rank for c in res.candidates] == [1, 2, 3]
    assert first.lon == pytest.approx(15.0138, abs=1e-3)  # UTM 33N -> lon/lat


def test_a_place_several_chips_support_outranks_a_lone_chip():
    """A lone chip of cosine 0.90 against a place whose three overlapping chips score 0.88,
    0.87 and 0.86: the place holds most of the retrieval softmax's mass and ranks first; its
    probability is that share, its `cosine` still its best chip's."""
    q = np.eye(16, dtype=np.float32)[:1]
    other = np.eye(16, dtype=np.float32)[1]

    def emb(cos):
        return cos * q[0] + math.sqrt(1 - cos**2) * other

    embs = [emb(0.90), emb(0.88), emb(0.87), emb(0.86)]
    boxes = [(509000, 5509000, 100), (501000, 5501000, 100), (501040, 5501000, 100),
             (501020, 5501020, 150)]  # fmt: skip
    res = locate(hand_index(embs, boxes), q, logit_scale=20.0, top_k=2, heatmap=False)
    place, lone = res.candidates
    assert sorted(place.chip_ids) == [11, 12, 13] and lone.chip_ids == [10]
    assert place.cosine == pytest.approx(0.88, abs=1e-5)
    assert lone.cosine == pytest.approx(0.90, abs=1e-5)
    mass = np.exp(20 * (np.array([0.88, 0.87, 0.86, 0.90]) - 0.90))
    assert place.probability == pytest.approx(mass[:3].sum() / mass.sum(), abs=1e-4)
    assert place.score > lone.score and [c.retrieval_rank for c in res.candidates] == [1, 2]


def test_a_sure_model_still_gives_the_places_asked_for():
    """Sixty chips of one place outscore everything else: the first retrieval (50 chips) holds
    that one place only, so the search goes deeper until top_k places are found; with fewer
    places in the whole index, all of them."""
    q = np.eye(16, dtype=np.float32)[:1]
    other = np.eye(16, dtype=np.float32)[1]

    def emb(cos):
        return cos * q[0] + math.sqrt(1 - cos**2) * other

    embs = [emb(0.95 - 0.001 * i) for i in range(60)] + [emb(0.5 - 0.01 * i) for i in range(6)]
    boxes = [(501000 + (i % 5), 5501000, 100) for i in range(60)]
    boxes += [(503000 + 400 * i, 5503000, 100) for i in range(6)]
    index = hand_index(embs, boxes)
    res = locate(index, q, logit_scale=20.0, top_k=5, heatmap=False)
    assert [c.rank for c in res.candidates] == [1, 2, 3, 4, 5]
    assert len(res.candidates[0].chip_ids) == 60
    assert [c.chip_ids for c in res.candidates[1:]] == [[70], [71], [72], [73]]
    res = locate(index, q, logit_scale=20.0, top_k=10, heatmap=False)
    assert len(res.candidates) == 7  # every place there is


def test_search_limited_to_a_region(scene):
    index, q = scene
    region = tiling.Region.from_bbox("502900,5502900,503100,5503100", UTM)
    res = locate(index, q, logit_scale=50.0, top_k=3, region=region, heatmap=False)
    assert [c.chip_ids for c in res.candidates] == [[12]]


def test_heatmap_holds_chip_scores(scene):
    index, q = scene
    heat = locate(index, q, logit_scale=50.0).heatmap
    x0, res, _, y1, _, _ = heat.geotransform
    assert res == 25.0
    col, row = int((501000 - x0) / res), int((y1 - 5501000) / res)
    best = float(index.faiss_index.search(q, 1)[0][0, 0])
    assert heat.values[row, col] == pytest.approx(best, abs=1e-6)
    assert np.isnan(heat.values).any()  # gaps between distant chips stay empty


def test_results_geopackage_reads_back(scene, tmp_path):
    index, q = scene
    res = locate(index, q, logit_scale=50.0, top_k=3)
    rec = QueryRecord(query_id=1, kind="photo", model_id="m", index_id="hand", file="a.jpg",
                      sha256="ab" * 32, device="CPU", parameters={"top_k": 3})  # fmt: skip
    out = write_results(tmp_path / "r.gpkg", [(rec, res, UTM)])
    ds = ogr.Open(str(out))
    cand = ds.GetLayerByName("candidates")
    fields = [
        cand.GetLayerDefn().GetFieldDefn(i).GetName()
        for i in range(cand.GetLayerDefn().GetFieldCount())
    ]
    for name in ("query_id", "rank", "score", "probability", "lon", "lat", "chip_ids"):
        assert name in fields
    assert cand.GetFeatureCount() == 3 and cand.GetSpatialRef().GetAuthorityCode(None) == "4326"
    f = cand.GetNextFeature()
    assert f.GetField("rank") == 1 and f.GetField("chip_ids") == "10,11"
    assert f.GetGeometryRef().GetX() == pytest.approx(res.candidates[0].lon)
    foot = ds.GetLayerByName("footprints")
    assert foot.GetFeatureCount() == 3 and foot.GetNextFeature().GetGeometryRef().GetArea() > 0
    query = ds.GetLayerByName("query").GetNextFeature()
    assert query.GetField("kind") == "photo" and json.loads(query.GetField("parameters")) == {
        "top_k": 3
    }
    heat = gdal.Open(f"GPKG:{out}:heatmap_1")
    assert heat.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert np.nanmax(heat.ReadAsArray()) == pytest.approx(
        max(c.cosine for c in res.candidates), abs=1e-5
    )


def test_photo_orientation_and_alpha(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    Image.fromarray(img).save(tmp_path / "o.jpg", exif=exif, quality=95)
    up = read_photo(tmp_path / "o.jpg")
    assert up.shape == (40, 20, 3) and up[:10].mean() > 200 and up[-10:].mean() < 50
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    px = read_photo(tmp_path / "a.png")
    assert px[0, 0].tolist() == [255, 0, 0] and px[-1, -1].tolist() == [255, 255, 255]


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(p.name.encode() + (p.read_bytes() if p.is_file() else b""))
    return h.hexdigest()


def test_cli_locate_a_chip_and_json(tiny_bundle, tiny_index, utm_raster, tmp_path):
    index = Index.open(tiny_index)
    reader = tiling.ChipReader(tiling.open_raster(utm_raster), index.crs, (0, 0, 1e9, 1e9))
    row = len(index.ids) // 3
    Image.fromarray(reader.read(index.cx[row], index.cy[row], index.sizes[row], 32)).save(
        tmp_path / "chip.png"
    )
    # Through the satellite tower that built the index, the chip finds itself.
    r = run_cli("geobridge_qgis", "locate", "--bundle", tiny_bundle, "--index", tiny_index,
                "--photo", tmp_path / "chip.png", "--view", "satellite", "--no-rotate",
                "--no-rerank", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)[0]
    assert int(index.ids[row]) in best["chip_ids"] and best["score"] > 0.99
    # The tiny bundle's drone tower is another random tower: look the chip up with text
    # and photo both, check the JSON contract and that the GeoPackage is written.
    r = run_cli("geobridge_qgis", "locate", "--bundle", tiny_bundle, "--index", tiny_index,
                "--photo", tmp_path / "chip.png", "--text", "a field", "--json",
                "--out", tmp_path / "r.gpkg", "--top-k", "4",
                "--heatmap", tmp_path / "heat.tif")  # fmt: skip
    assert r.returncode == 0, r.stderr
    cands = json.loads(r.stdout)
    assert [c["rank"] for c in cands] == [1, 2, 3, 4]
    assert all({"rank", "score", "lon", "lat", "probability"} <= c.keys() for c in cands)
    lon0, lat0, lon1, lat1 = index.manifest["grid"]["lonlat_bounds"]
    assert all(
        lon0 - 0.01 < c["lon"] < lon1 + 0.01 and lat0 - 0.01 < c["lat"] < lat1 + 0.01 for c in cands
    )
    ds = ogr.Open(str(tmp_path / "r.gpkg"))
    q = ds.GetLayerByName("query").GetNextFeature()
    assert q.GetField("kind") == "photo+text" and q.GetField("text") == "a field"
    heat = gdal.Open(str(tmp_path / "heat.tif"))
    assert heat.GetSpatialRef().GetAuthorityCode(None) == "32633"
    # The best chip seeds one of the candidates (re-ranking may have moved it down); the heat
    # map holds retrieval cosines, which the candidates keep as `cosine`.
    assert np.nanmax(heat.ReadAsArray()) == pytest.approx(max(c["cosine"] for c in cands), abs=1e-5)
    assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
    assert all(c["method"] in ("reranked", "refined") and c["match"] for c in cands)
    # Retrieval alone: the flags switch the geometric step off; the JSON says so.
    r = run_cli("geobridge_qgis", "locate", "--bundle", tiny_bundle, "--index", tiny_index,
                "--photo", tmp_path / "chip.png", "--json", "--top-k", "3", "--no-rerank",
                "--no-priors")  # fmt: skip
    assert r.returncode == 0, r.stderr
    cands = json.loads(r.stdout)
    assert [c["method"] for c in cands] == ["retrieval"] * 3
    assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
    for c in cands:
        assert c["match"] is None and c["priors_used"] == []
        ring = ogr.CreateGeometryFromWkt(c["footprint_wkt"])  # the chip square, in WGS84
        assert ring.Contains(ogr.CreateGeometryFromWkt(f"POINT ({c['lon']} {c['lat']})"))


def test_cli_bad_input(tiny_bundle, tiny_index, utm_raster, tmp_path):
    before = _tree_hash(tiny_index)
    jpg = tmp_path / "real.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(jpg)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("field notes\n")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpg.read_bytes()[:300])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)
    plain = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(plain), 16, 16, 3, gdal.GDT_Byte)
    broken = tmp_path / "broken_bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / "text.onnx").write_bytes((broken / "text.onnx").read_bytes()[:-10])
    foreign = tmp_path / "foreign_index"
    shutil.copytree(tiny_index, foreign)
    m = json.loads((foreign / "index.json").read_text())
    m.update(model_id="0123456789abcdef", model_name="Another GeoBridge")
    (foreign / "index.json").write_text(json.dumps(m))
    squatted = tmp_path / "new_index.partial"
    squatted.mkdir()
    (squatted / "notes.txt").write_text("mine")

    loc = ["locate", "--bundle", tiny_bundle, "--index", tiny_index]
    idx = [
        "index",
        "--bundle",
        tiny_bundle,
        "--raster",
        utm_raster,
        "--out",
        tmp_path / "new_index",
    ]
    cases = [
        (loc + ["--photo", not_image], not_image, "not an image"),
        (loc + ["--photo", truncated], truncated, "truncated"),
        (loc + ["--photo", empty], empty, "empty file (0 bytes)"),
        (loc + ["--photo", bomb], bomb, "pixel cap"),
        (["index", "--bundle", tiny_bundle, "--raster", plain, "--out", tmp_path / "x"], plain,
         "has no georeference"),
        (idx[:-2] + ["--bbox", "16.5,40.0,16.6,40.1,EPSG:4326", "--out", tmp_path / "y"], "bbox",
         "does not overlap the raster"),
        (idx[:-2] + ["--bbox", "500300,5500700,500200,5500800", "--out", tmp_path / "z"], "bbox",
         "empty box"),
        (["locate", "--bundle", broken, "--index", tiny_index, "--text", "a road"],
         broken / "text.onnx", "checksum does not match"),
        (["locate", "--bundle", tiny_bundle, "--index", foreign, "--text", "a road"], foreign,
         "built by model Another GeoBridge"),
        (idx, squatted, "half-written index from another build"),
        (loc + ["--text", "a road", "--out", tmp_path / "no" / "such" / "r.gpkg"], "r.gpkg",
         "cannot write there"),
    ]  # fmt: skip
    for args, named, expected in cases:
        r = run_cli("geobridge_qgis", *args)
        assert r.returncode == 2, (expected, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(named) in r.stderr and expected in r.stderr, (expected, r.stderr)
    assert _tree_hash(tiny_index) == before
    assert (squatted / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z", "new_index"))
