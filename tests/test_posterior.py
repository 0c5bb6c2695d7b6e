"""The metadata prior, the posterior step, the consistency gates and the reliability table
(core.posterior, core.fusion, core.consistency, geolab.levels).

Matches are real (the demo world's satellite raster, photos warped from it with a known camera,
as in test_refine); retrieval candidates are made by hand where the test is about the order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from osgeo import ogr
from pyproj import Transformer
from test_refine import SAT, synthetic_photo

from geobridge_qgis.core import fusion, refine, tiling
from geobridge_qgis.core import locate as L
from geobridge_qgis.core.camera import Camera
from geobridge_qgis.core.consistency import conflict
from geobridge_qgis.core.match import Match
from geobridge_qgis.core.photo import PhotoMeta
from geobridge_qgis.core.posterior import MAX_RANGE_M, SIGMAS, metadata_prior
from geobridge_qgis.core.priors import PriorOptions
from geobridge_qgis.core.results import QueryRecord, write_results
from geolab.calibrate import fit, fit_platt, fit_sigma_floor
from geolab.levels import Runs, expected_calibration_error, reliability, uncertainty_table

SIZE = (640, 480)


@pytest.fixture(scope="module")
def sat():
    from pyproj import CRS

    ds = tiling.open_raster(SAT)
    crs = CRS.from_wkt(ds.GetProjection())
    gt = ds.GetGeoTransform()
    centre = (gt[0] + gt[1] * ds.RasterXSize / 2, gt[3] + gt[5] * ds.RasterYSize / 2)
    yield ds, crs, centre
    ds = None  # released while GDAL is still up


def meta_for(crs, cam: Camera, dx: float = 0.0, dy: float = 0.0, yaw_err: float = 0.0):
    """What a drone at `cam` writes, its GPS off by (dx, dy) metres and its yaw by yaw_err."""
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(cam.x + dx, cam.y + dy)
    from geobridge_qgis.core.camera import focal_35mm_from_hfov

    return PhotoMeta(lon=lon, lat=lat, altitude_m=cam.altitude_m, altitude_ref="take-off",
                     heading_deg=(cam.heading_deg + yaw_err) % 360, pitch_deg=cam.tilt_deg - 90,
                     focal_35mm=focal_35mm_from_hfov(cam.hfov_deg, *SIZE))  # fmt: skip


def candidate(x, y, score=0.5, size=100.0, rank=1):
    return L.Candidate(rank=rank, score=score, probability=0.0, x=x, y=y, lon=0.0, lat=0.0,
                       size_m=size, footprint=tiling.chip_polygon(x, y, size), chip_ids=[rank],
                       chip_scores=[score], rotation=0, retrieval_rank=rank)  # fmt: skip


def test_prior_propagates_the_error_model(sat):
    _, crs, (x0, y0) = sat
    nadir = metadata_prior(meta_for(crs, Camera(x0, y0, 100.0, 30.0, 0.0, 70.0)), SIZE,
                           PriorOptions(), crs)  # fmt: skip
    assert nadir.level == "full" and nadir.wedge is None
    assert math.hypot(nadir.x - x0, nadir.y - y0) < 0.01  # straight down: the GPS point
    # Straight down, a pitch error still moves the centre (h * pitch); the yaw does not.
    pitch_m = 100.0 * math.radians(SIGMAS.pitch_deg)
    assert nadir.sigma_along_m == pytest.approx(math.hypot(SIGMAS.gps_m, pitch_m), rel=1e-3)
    assert nadir.sigma_across_m == pytest.approx(SIGMAS.gps_m, rel=1e-3)
    cam = Camera(x0, y0, 100.0, 90.0, 45.0, 70.0)
    p = metadata_prior(meta_for(crs, cam), SIZE, PriorOptions(), crs)
    assert p.x - x0 == pytest.approx(100.0, abs=0.01) and abs(p.y - y0) < 0.01  # 100 m east
    alt_sigma = math.hypot(SIGMAS.baro_m, SIGMAS.takeoff_dz_m)
    along = math.hypot(100.0 / math.cos(math.radians(45)) ** 2 * math.radians(SIGMAS.pitch_deg),
                       alt_sigma)  # fmt: skip
    assert p.sigma_along_m == pytest.approx(math.hypot(SIGMAS.gps_m, along), rel=1e-6)
    across = 100.0 * math.radians(SIGMAS.yaw_deg)
    assert p.sigma_across_m == pytest.approx(math.hypot(SIGMAS.gps_m, across), rel=1e-6)
    # 3 sigma: across the view the yaw error dominates; along it, the altitude and pitch.
    assert p.inside(p.x, p.y + 2.9 * p.sigma_across_m) and not p.inside(
        p.x, p.y + 3.1 * p.sigma_across_m
    )
    # GPS only: the view centre is anywhere a low drone looks, tens of metres.
    gps = metadata_prior(PhotoMeta(lon=p.lon, lat=p.lat), SIZE, PriorOptions(), crs)
    assert gps.level == "gps" and 40 < gps.sigma_m < 60


def test_prior_probability_leaves_room_for_gnss_jumps(sat):
    """However tight the Gaussian, a share of GNSS fixes jump: P(within r) stays below 1 while
    a jump can land beyond r, and a jump shorter than r still lands within it."""
    _, crs, (x0, y0) = sat
    p = metadata_prior(meta_for(crs, Camera(x0, y0, 100.0, 30.0, 0.0, 70.0)), SIZE,
                       PriorOptions(), crs)  # fmt: skip
    gauss = 1.0 - math.exp(-(50.0**2) / (2 * p.sigma_along_m * p.sigma_across_m))
    assert gauss > 0.9999  # the Gaussian alone would say certain
    q, (lo, hi) = SIGMAS.gps_jump_rate, SIGMAS.gps_jump_m
    assert p.p_within(50.0) == pytest.approx(1 - q + q * (50.0 - lo) / (hi - lo), rel=1e-6)
    gauss10 = 1.0 - math.exp(-(10.0**2) / (2 * p.sigma_along_m * p.sigma_across_m))
    assert p.p_within(10.0) == pytest.approx((1 - q) * gauss10, rel=1e-9)  # no jump is that short
    assert p.p_within(hi + 1) == pytest.approx(1.0) and p.p_within(lo) < 1 - q + 1e-9


def test_near_horizon_prior_is_a_wedge_not_infinity(sat):
    _, crs, (x0, y0) = sat
    cam = Camera(x0, y0, 40.0, 0.0, 86.0, 70.0)  # looking north, 4 degrees below the horizon
    p = metadata_prior(meta_for(crs, cam), SIZE, PriorOptions(), crs)
    assert p.wedge is not None and p.wedge[1] == MAX_RANGE_M
    assert 0 < p.y - y0 <= MAX_RANGE_M and abs(p.x - x0) < 1.0
    assert p.inside(x0, y0 + 800.0)  # far along the yaw: inside
    assert not p.inside(x0 + 400.0, y0 + 600.0)  # 34 degrees off the yaw: outside
    assert not p.inside(x0, y0 - 500.0)  # behind the drone


def test_failed_matching_answers_the_prior_with_its_sigma(sat):
    """Matching finds nothing: the answer is the prior's point and uncertainty, not the
    best retrieval chip 300 m away."""
    _, crs, (x0, y0) = sat
    cam = Camera(x0, y0, 100.0, 0.0, 20.0, 70.0)
    prior = metadata_prior(meta_for(crs, cam), SIZE, PriorOptions(), crs)
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(np.full((480, 640, 3), 128, np.uint8))  # featureless: every match fails
    prior_match = fusion.match_prior(m, prior, None, 100.0)
    assert not prior_match.ok
    chips = [candidate(x0 + 300, y0, 0.9, rank=1), candidate(x0 - 250, y0 + 40, 0.8, rank=2)]
    out = L.rerank(chips, m, 2)
    out = fusion.fuse(out, prior, crs, 20.0, prior_match, L.Candidate)
    top = out[0]
    assert top.method == "metadata" and top.rank == 1
    assert (top.x, top.y) == (prior.x, prior.y)
    assert top.centre_sigma_m == pytest.approx(prior.sigma_m)
    assert all(c.method != "refined" for c in out) and all(c.conflict is None for c in out)
    # Unverified chips get half a chip of uncertainty and a low probability.
    assert [c.centre_sigma_m for c in out[1:]] == [50.0, 50.0]
    assert all(c.probability < top.probability for c in out[1:])


def test_accepted_match_inside_the_prior_wins_refined(sat):
    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=110.0, tilt_deg=20.0, hfov_deg=70.0, heading_deg=40.0)
    photo, truth = synthetic_photo(ds, crs, (x0 + 100, y0 - 60), cam)
    true_cam = Camera(x0 + 100, y0 - 60, 110.0, 40.0, 20.0, 70.0)
    meta = meta_for(crs, true_cam, dx=4.0, dy=-3.0, yaw_err=4.0)  # a consumer drone's errors
    prior = metadata_prior(meta, SIZE, PriorOptions(), crs)
    assert math.hypot(prior.x - truth["centre"][0], prior.y - truth["centre"][1]) > 4.0
    m = refine.Matcher(str(SAT), crs)
    from geobridge_qgis.core.priors import priors_for

    m.set_photo(photo, priors_for(meta, SIZE, PriorOptions()).camera)
    pm = fusion.match_prior(m, prior, None, 100.0)
    assert pm.ok, pm.reason
    far_chip = candidate(x0 - 300, y0 + 200, 0.9)  # retrieval's favourite, unverified
    out = fusion.fuse([far_chip], prior, crs, 20.0, pm, L.Candidate)
    top = out[0]
    assert top.method == "refined" and top.conflict is None and top.evidence
    assert math.hypot(top.x - truth["centre"][0], top.y - truth["centre"][1]) < 3.0
    assert [c.method for c in out] == ["refined", "metadata", "retrieval"]
    assert top.probability > 0.5 and top.centre_sigma_m < 5.0


def test_match_outside_three_sigma_is_a_conflict_never_the_answer(sat):
    """A match at the true spot while the GPS says 80 m elsewhere (a jump): flagged, with both
    positions, and the metadata's point stays the answer."""
    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=110.0, tilt_deg=10.0, hfov_deg=70.0, heading_deg=300.0)
    photo, truth = synthetic_photo(ds, crs, (x0 - 120, y0 + 90), cam)
    meta = meta_for(crs, Camera(x0 - 120, y0 + 90, 110.0, 300.0, 10.0, 70.0), dx=80.0)
    prior = metadata_prior(meta, SIZE, PriorOptions(), crs)
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(photo)
    chips = L.rerank([candidate(*(truth["centre"] + [20.0, -15.0]), 0.7, 150.0)], m, 1)
    assert chips[0].method == "refined", chips[0].match.reason
    out = fusion.fuse(chips, prior, crs, 20.0, None, L.Candidate)
    assert out[0].method == "metadata"
    flagged = [c for c in out if c.conflict]
    assert len(flagged) == 1 and flagged[0].method == "refined"
    why = flagged[0].conflict
    assert "outside its 3 sigma" in why and f"{prior.lon:.6f}" in why
    mlon, _ = Transformer.from_crs(crs, 4326, always_xy=True).transform(flagged[0].x, flagged[0].y)
    assert f"{mlon:.6f}" in why
    assert flagged[0].probability < out[0].probability


def test_heading_and_scale_disagreeing_are_conflicts(sat):
    _, crs, (x0, y0) = sat
    cam = Camera(x0, y0, 100.0, 0.0, 0.0, 70.0)
    prior = metadata_prior(meta_for(crs, cam), SIZE, PriorOptions(), crs)
    fp = cam.footprint(SIZE)
    ok = Match(True, x=x0 + 1, y=y0, heading_deg=3.0, heading_sigma_deg=1.0,
               footprint=[tuple(p) for p in [*fp, fp[0]]], confidence=0.8)  # fmt: skip
    assert conflict(prior, ok, crs) is None
    turned = Match(True, x=x0 + 1, y=y0, heading_deg=40.0, heading_sigma_deg=1.0,
                   footprint=ok.footprint, confidence=0.8)  # fmt: skip
    assert "heading 40 deg" in conflict(prior, turned, crs)
    big = np.array(ok.footprint) * 2.0 - np.array([x0, y0])  # twice as wide: ~2x the altitude
    scaled = Match(True, x=x0 + 1, y=y0, heading_deg=3.0, heading_sigma_deg=1.0,
                   footprint=[tuple(p) for p in big], confidence=0.8)  # fmt: skip
    assert "footprint scale x2.0" in conflict(prior, scaled, crs)


def test_reliability_table_by_hand():
    p = [0.05, 0.05, 0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 1.0]
    hit = [False, False, True, True, True, False, True, False, True]
    rows = {r["bin"]: r for r in reliability(p, hit)}
    assert rows["0.0-0.1"]["n"] == 2 and rows["0.0-0.1"]["observed"] == 0.0
    assert rows["0.5-0.6"]["n"] == 2 and rows["0.5-0.6"]["observed"] == 0.5
    assert rows["0.9-1.0"]["n"] == 5 and rows["0.9-1.0"]["observed"] == pytest.approx(0.8)
    assert rows["0.9-1.0"]["mean_p"] == pytest.approx(0.96)
    assert rows["0.3-0.4"]["n"] == 0
    # |0.05 - 0| * 2 + |0.55 - 0.5| * 2 + |0.96 - 0.8| * 5, over 9
    assert expected_calibration_error(list(rows.values())) == pytest.approx((0.1 + 0.1 + 0.8) / 9)


def test_uncertainty_table_by_hand(monkeypatch):
    monkeypatch.setattr(fusion, "REFINED_SIGMA_FLOOR_M", 0.0)
    c = [{"kind": "refined", "rank": 0, "sigma_m": 2.0, "error_m": e} for e in (1, 3, 5, 7)]
    c += [{"kind": "metadata", "rank": 0, "sigma_m": 10.0, "error_m": 25.0},
          {"kind": "metadata", "rank": 1, "sigma_m": 1.0, "error_m": 0.5}]  # fmt: skip
    rows = {
        r.split(" | ")[0].strip("| "): r for r in uncertainty_table(Runs(candidates=c)).split("\n")
    }
    # refined: errors 1, 3, 5, 7 m against 2, 4, 6 m: 1, 2, 3 of 4; only top-1s count
    assert rows["refined"].endswith("| 2.0 | 4.0 | 25 | 50 | 75 | 4 |"), rows["refined"]
    assert rows["metadata"].endswith("| 10.0 | 25.0 | 0 | 0 | 100 | 1 |"), rows["metadata"]
    assert rows["(a normal's)"].startswith("| (a normal's) | | | 39 | 86 | 99 |")
    # Today's floor applies to what the run recorded as the match's own sigma: 2 m and 1.5 m
    # make 2.5 m; errors 1, 3, 5, 7 m against 2.5, 5, 7.5 m.
    monkeypatch.setattr(fusion, "REFINED_SIGMA_FLOOR_M", 1.5)
    for r in c[:4]:
        r["match_sigma_m"], r["sigma_m"] = 2.0, 99.0
    table = uncertainty_table(Runs(candidates=c))
    assert "| refined | 2.5 | 4.0 | 25 | 75 | 100 | 4 |" in table, table


def test_sigma_floor_fit_recovers_the_model_error():
    """Refined centres whose matches claim 0.5 m but whose errors are a normal's with 3 m per
    axis: the floor that makes 2 sigma hold 86 % is about sqrt(3^2 - 0.5^2); wrong matches
    (beyond 50 m) do not move it, and a handful of matches fits nothing."""
    rng = np.random.default_rng(11)
    err = np.hypot(*rng.normal(0, 3.0, (2, 3000)))
    recs = [{"kind": "refined", "error_m": float(e), "match_sigma_m": 0.5} for e in err]
    wrong = [{"kind": "refined", "error_m": 400.0, "match_sigma_m": 0.5}] * 300
    others = [{"kind": "metadata", "error_m": 30.0, "match_sigma_m": None}] * 300
    floor = fit_sigma_floor(recs + wrong + others)
    assert floor == pytest.approx(math.sqrt(9 - 0.25), abs=0.2)
    assert fit_sigma_floor(recs[:5]) is None


def test_stated_uncertainty_of_a_refined_candidate_has_the_floor(sat, monkeypatch):
    _, crs, (x0, y0) = sat
    monkeypatch.setattr(fusion, "REFINED_SIGMA_FLOOR_M", 3.0)
    chips = [candidate(x0 + 100 * k, y0, 0.9 - 0.1 * k, rank=k + 1) for k in range(3)]
    chips[1].method = "refined"
    chips[1].match = Match(True, x=x0, y=y0, confidence=0.5, centre_sigma_m=0.4)
    chips[1].centre_sigma_m = 0.4
    out = fusion.fuse(list(chips), None, crs, 20.0, None, L.Candidate)
    fusion.state_uncertainty(out)
    assert out[1].centre_sigma_m == pytest.approx(math.hypot(0.4, 3.0))
    assert out[0].centre_sigma_m == out[2].centre_sigma_m == 50.0  # half a chip: unchanged


def test_platt_fit_recovers_known_coefficients():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, 4000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(0.7 + 1.5 * x)))
    a, b = fit_platt(x, y, l2=0.0)
    assert a == pytest.approx(0.7, abs=0.15) and b == pytest.approx(1.5, abs=0.15)


def test_calibration_never_learns_certainty_from_a_few_dozen_hits():
    """38 metadata candidates that all hit and 2 that miss, the feature separating them: 0/1
    targets would fit a near-certain slope; Platt's targets keep the hits' mean probability at
    near (38 + 1) / (38 + 2) and the top one short of "100.0 %"."""
    rng = np.random.default_rng(5)
    feats = rng.uniform(2, 9, 38)
    hits = [{"kind": "metadata", "feature": float(f), "error_m": 5.0} for f in feats]
    misses = [{"kind": "metadata", "feature": float(f), "error_m": 80.0} for f in (0.5, 1.0)]
    allhit = [{"kind": "refined", "feature": 0.8, "error_m": 1.0}] * 24
    table = fit(hits + misses + allhit)
    p_hits = [fusion.calibrated("metadata", f, table) for f in feats]
    p_all = [*p_hits, *(fusion.calibrated("metadata", f, table) for f in (0.5, 1.0))]
    # A fit with an intercept matches the targets' mean: 38 x 39/40 and 2 x 1/4, over 40.
    assert np.mean(p_all) == pytest.approx((38 * 39 / 40 + 2 / 4) / 40, abs=2e-3)
    assert 0.9 < np.mean(p_hits) < 39 / 40
    assert max(p_hits) < 0.999 and fusion.calibrated("metadata", 0.5, table) < min(p_hits)
    assert fusion.calibrated("refined", 0.8, table) == pytest.approx(25 / 26, rel=1e-3)
    a, b = fit_platt([*feats, 0.5, 1.0], [1] * 38 + [0, 0])  # hard targets: near certain
    assert 1 / (1 + math.exp(-(a + b * feats.max()))) > 0.9999


def test_conflict_and_uncertainty_reach_the_geopackage_and_json(sat, tmp_path):
    _, crs, (x0, y0) = sat
    c = candidate(x0, y0)
    c.lon, c.lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(x0, y0)
    c.method, c.conflict, c.centre_sigma_m = "refined", "centre 80 m from ...", 1.5
    c.match = Match(True, x=x0, y=y0, heading_deg=0.0)
    c.heading_deg, c.retrieval_lonlat = 0.0, (c.lon, c.lat)
    d = c.as_dict(crs)
    assert d["conflict"] == "centre 80 m from ..." and d["centre_sigma_m"] == 1.5
    res = L.LocateResult([c], None)
    path = write_results(tmp_path / "r.gpkg", [(QueryRecord(1, "photo", "m", "i"), res, crs)])
    ds = ogr.Open(str(path))
    f = ds.GetLayerByName("candidates").GetNextFeature()
    got = (f["conflict"], f["centre_sigma_m"])
    f = ds = None  # the feature before its dataset
    assert got == ("centre 80 m from ...", 1.5)


def test_without_metadata_the_order_is_the_rerankers(sat):
    _, crs, (x0, y0) = sat
    chips = [candidate(x0 + 100 * k, y0, 0.9 - 0.1 * k, rank=k + 1) for k in range(4)]
    chips[2].method, chips[2].match = "refined", Match(True, x=x0, y=y0, confidence=0.5)
    chips[2].centre_sigma_m = 1.2
    order = [id(c) for c in chips]
    out = fusion.fuse(list(chips), None, crs, 20.0, None, L.Candidate)
    assert [id(c) for c in out] == order and [c.rank for c in out] == [1, 2, 3, 4]
    assert all(c.method != "metadata" and c.conflict is None for c in out)
    assert out[2].centre_sigma_m == 1.2 and out[0].centre_sigma_m == 50.0
    assert out[2].probability > out[0].probability > out[3].probability > 0
