"""Candidates that read right after re-ranking: the shown score is the one that ordered them,
the probability falls with rank, the map colour follows rank, and candidates refined to one
spot are one candidate."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import ROOT
from osgeo import ogr
from pyproj import CRS, Transformer
from test_refine import SAT, _candidate, sat, synthetic_photo  # noqa: F401  (sat: a fixture)

from geobridge_qgis.core import fusion, refine
from geobridge_qgis.core import locate as L
from geobridge_qgis.core.service import IndexRequest, LocateRequest, build_index, locate

DEMO = ROOT / "resources" / "demo"


def refined(rank: int, x: float, y: float, score: float, sigma: float = 1.0) -> L.Candidate:
    c = _candidate(rank, x, y, score)
    c.method, c.centre_sigma_m, c.rank_score = "refined", sigma, score
    c.retrieval_lonlat = (float(rank), 0.0)
    return c


def test_candidates_refined_to_one_spot_are_merged():
    cands = [
        refined(1, 100.0, 100.0, 2.9),
        _candidate(2, 400.0, 100.0, 0.7),  # not refined: never merged
        refined(3, 102.5, 101.0, 2.7),  # 2.7 m from rank 1, sigma 1 m: the same spot
        refined(4, 160.0, 100.0, 2.5, sigma=40.0),  # 60 m off, but 40 m uncertain: same spot
        refined(5, 100.0, 180.0, 2.4),  # 80 m off, 1 m uncertain: another place
    ]
    cands[2].retrieval_rank, cands[2].cosine = 0, 0.81  # the same place retrieved better
    out = L.merge_same_spot(cands)
    assert [c.rank for c in out] == [1, 2, 3]
    best = out[0]
    assert (best.x, best.y, best.score) == (100.0, 100.0, 2.9)  # the better keeps its place
    assert best.merged_ranks == [0, 1, 4] and best.retrieval_rank == 0 and best.cosine == 0.81
    assert best.retrieval_lonlat == (3.0, 0.0)
    assert sorted(best.chip_ids) == [1, 3, 4]
    assert [c.chip_ids for c in out[1:]] == [[2], [5]]


def test_two_candidates_refined_to_the_same_spot_merge(sat):  # noqa: F811
    ds, crs, (x0, y0) = sat
    cam = refine.Camera(0.0, 0.0, altitude_m=130.0, tilt_deg=15.0, hfov_deg=70.0, heading_deg=200.0)
    photo, truth = synthetic_photo(ds, crs, (x0 + 300, y0 + 300), cam)
    tx, ty = truth["centre"]
    # Two neighbouring chips around the truth, and one far away.
    cands = [_candidate(1, tx + 30, ty - 25, 0.8), _candidate(2, tx - 35, ty + 30, 0.75),
             _candidate(3, x0 - 600, y0 - 600, 0.7)]  # fmt: skip
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(photo)
    out = refine.rerank(cands, m, top_n=3)
    assert [c.method for c in out[:2]] == ["refined", "refined"]  # split in two before
    merged = L.merge_same_spot(out)
    L.set_probabilities(merged, 100.0)
    assert len(merged) == 2 and merged[0].merged_ranks == [1, 2]
    assert math.hypot(merged[0].x - tx, merged[0].y - ty) < 3.0
    assert merged[0].probability > 0.99  # not split 80 / 20 any more


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory):
    """drone_004 located in an index of 600 m around it: the photo the analyst saw rank 1
    at score 0.269 and 100 %, rank 2 at 0.714 and 0 %, drawn palest. Its two chips inside the
    GPS prior are both matched, to one spot (their footprints overlap 95 %)."""
    world = DEMO / "world"
    if not (DEMO / "bundle" / "manifest.json").is_file():
        pytest.skip("resources/demo is not there")
    with open(world / "drone" / "truth.csv", newline="") as f:
        truth = next(r for r in csv.DictReader(f) if r["file"] == "drone_004.jpg")
    tmp = tmp_path_factory.mktemp("demo")
    crs = CRS.from_wkt(_raster_wkt(world / "satellite.tif"))
    x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(
        float(truth["lon"]), float(truth["lat"])
    )
    bbox = f"{x - 300},{y - 300},{x + 300},{y + 300}"
    index = build_index(
        IndexRequest(DEMO / "bundle", str(world / "satellite.tif"), tmp / "index", region=bbox)
    )
    out = tmp / "results.gpkg"
    outcome = locate(
        LocateRequest(
            DEMO / "bundle", index.folder, photos=[world / "drone" / "drone_004.jpg"], out=out
        )
    )
    return outcome.queries[0], out


def _raster_wkt(path) -> str:
    from osgeo import gdal

    return gdal.Open(str(path)).GetProjection()


def test_rank_one_has_the_highest_score_and_probability(demo_result):
    q, gpkg = demo_result
    # The metadata's own candidate has no image score; the image evidence reads top-down.
    cands = [c for c in q.candidates if c.method != "metadata"]
    assert cands and cands[0].method == "refined"
    # Both chips refined to one spot: one candidate standing for both retrieval ranks.
    assert cands[0].merged_ranks == [1, 2] and cands[0].retrieval_rank == 1
    scores = [c.score for c in cands]
    probs = [c.probability for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert probs[0] == max(probs)
    # The shown score is the rank score that ordered it; the retrieval cosine its own field
    # (the better of the merged chips').
    assert cands[0].score == cands[0].rank_score and cands[0].score > 2.0
    assert cands[0].cosine == pytest.approx(max(cands[0].chip_scores), abs=1e-6)
    assert cands[0].cosine < 1.0 < cands[0].score
    ds = ogr.Open(str(gpkg))
    rows = sorted((f["rank"], f["score"], f["probability"], f["cosine"])
                  for f in ds.GetLayerByName("candidates")
                  if f["method"] != "metadata")  # fmt: skip
    assert [r[1] for r in rows] == pytest.approx(scores, abs=1e-9)
    assert [r[3] for r in rows] == pytest.approx([c.cosine for c in cands], abs=1e-9)
    # A refined centre states its match's own sigma with the calibrated floor, in the
    # GeoPackage too: the bootstrap alone claims the model behind the match is exact.
    top = cands[0]
    assert top.centre_sigma_m == pytest.approx(fusion.refined_sigma(top.match.centre_sigma_m))
    assert top.centre_sigma_m >= fusion.REFINED_SIGMA_FLOOR_M > 0
    stated = {f["rank"]: f["centre_sigma_m"] for f in ds.GetLayerByName("candidates")}
    assert stated[top.rank] == pytest.approx(top.centre_sigma_m, abs=0.01)
    refined_xy = [(c.x, c.y) for c in cands if c.method == "refined"]
    assert all(  # merged: no two refined candidates left at one spot
        math.dist(a, b) > L.MERGE_MIN_M for i, a in enumerate(refined_xy) for b in refined_xy[:i]
    )


def test_rank_one_is_drawn_in_the_strongest_colour(qgis_app, demo_result):
    from qgis.core import QgsRenderContext, QgsVectorLayer

    from geobridge_qgis.layers import style_layer

    _q, gpkg = demo_result
    layer = QgsVectorLayer(f"{gpkg}|layername=candidates", "candidates", "ogr")
    assert style_layer(layer, "candidates")
    renderer = layer.renderer()
    context = QgsRenderContext()
    renderer.startRender(context, layer.fields())
    try:
        colours = {f["rank"]: renderer.symbolForFeature(f, context).color()
                   for f in layer.getFeatures()}  # fmt: skip
    finally:
        renderer.stopRender(context)
    # A yellow-to-dark-red ramp: the strongest colour is the darkest.
    lightness = {rank: c.lightnessF() for rank, c in colours.items()}
    assert len(lightness) >= 2
    assert lightness[1] < min(v for r, v in lightness.items() if r != 1)
    ranks = sorted(lightness)
    assert np.all(np.diff([lightness[r] for r in ranks]) >= 0)  # never stronger further down
