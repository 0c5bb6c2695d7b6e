"""Geometric re-ranking, refinement and the photo's priors (core.refine, core.priors).

Photos are made from the demo world's satellite raster by warping a window with a known
camera (a known homography), recoloured like another sensor and season, so the truth is exact.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli
from pyproj import CRS, Transformer

from geobridge_qgis.core import locate as L
from geobridge_qgis.core import refine, tiling
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.camera import Camera
from geobridge_qgis.core.encoders import Encoders
from geobridge_qgis.core.index import Index, build_index
from geobridge_qgis.core.photo import PhotoMeta
from geobridge_qgis.core.priors import NO_PRIORS, PriorOptions, priors_for

SAT = ROOT / "resources" / "demo" / "world" / "satellite.tif"
PHOTO_SIZE = (640, 480)


@pytest.fixture(scope="module")
def sat():
    ds = tiling.open_raster(SAT)
    crs = CRS.from_wkt(ds.GetProjection())
    gt = ds.GetGeoTransform()
    centre = (gt[0] + gt[1] * ds.RasterXSize / 2, gt[3] + gt[5] * ds.RasterYSize / 2)
    return ds, crs, centre


def synthetic_photo(ds, crs, cam_xy, camera: Camera, recolour: bool = True):
    """(photo, truth) for a camera above `cam_xy` (grid CRS): the satellite image seen through
    the camera's ground homography, as another sensor would see it."""
    w, h = PHOTO_SIZE
    G = camera.image_to_nadir_offsets((w, h), "corners")  # photo px -> metres from nadir
    corners = cv2.perspectiveTransform(
        np.float32([[0, 0], [w, 0], [w, h], [0, h], [w / 2, h / 2]]).reshape(-1, 1, 2), G
    ).reshape(-1, 2) + np.array(cam_xy)
    lo, hi = corners.min(0) - 20, corners.max(0) + 20
    res = 0.25
    side = float(max(hi - lo))
    mid = (lo + hi) / 2
    px = int(side / res)
    reader = tiling.ChipReader(ds, crs, tiling.raster_bounds(ds, crs))
    window = reader.read(mid[0], mid[1], side, px)
    # photo px -> ground -> window px
    to_window = (
        np.array(
            [
                [1 / res, 0, -(mid[0] - side / 2) / res],
                [0, -1 / res, (mid[1] + side / 2) / res],
                [0, 0, 1],
            ]
        )
        @ np.array([[1, 0, cam_xy[0]], [0, 1, cam_xy[1]], [0, 0, 1]])
        @ G
    )
    photo = cv2.warpPerspective(
        window, to_window, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
    )
    if recolour:  # another sensor: channel gains, a gamma, some noise
        rng = np.random.default_rng(1)
        f = photo.astype(np.float32) / 255
        f = np.clip(f**0.8 * np.array([1.1, 0.95, 0.85]) + rng.normal(0, 0.02, f.shape), 0, 1)
        photo = (f * 255).astype(np.uint8)
    truth = {"centre": corners[4], "footprint": corners[:4], "heading": camera.heading_deg}
    return photo, truth


def test_refiner_camera_inverts_the_forward_projection():
    """The refiner's map (photo pixels -> ground offsets, as it warps a photo) against the
    camera's forward projection (rotation and intrinsics, no homography: the path the
    renderer draws buildings and trees with), the renderer's footprint and closed forms."""
    cam = Camera(0.0, 0.0, altitude_m=110.0, heading_deg=140.0, tilt_deg=25.0, hfov_deg=68.0)
    w, h = PHOTO_SIZE
    px = np.array([[0, 0], [w, 0], [w, h], [0, h], [w / 2, h / 2], [123.4, 321.0]])
    G = cam.image_to_nadir_offsets(PHOTO_SIZE, "corners")
    g = np.c_[px, np.ones(len(px))] @ G.T
    ground = g[:, :2] / g[:, 2:]
    uv, depth = cam.project(np.c_[ground, np.zeros(len(ground))], PHOTO_SIZE)
    # Projected in OpenCV's pixel-centre convention: the corner convention's less half a pixel.
    assert np.abs(uv - (px - 0.5)).max() < 1e-6 and (depth > 0).all()
    # The renderer's footprint is the same quadrilateral: the image's outer edges.
    assert np.abs(cam.footprint(PHOTO_SIZE) - ground[:4]).max() < 1e-6
    # The image centre lies on the optical axis, altitude * tan(tilt) ahead along the heading.
    ahead = 110.0 * math.tan(math.radians(25.0))
    h_rad = math.radians(140.0)
    assert np.allclose(ground[4], [ahead * math.sin(h_rad), ahead * math.cos(h_rad)])
    assert np.allclose(cam.centre_ground(), ground[4])
    # Straight down, north up, 90 degrees across: a 200 x 150 m footprint, top-left to the NW.
    nadir = Camera(0.0, 0.0, altitude_m=100.0, heading_deg=0.0, tilt_deg=0.0, hfov_deg=90.0)
    G = nadir.image_to_nadir_offsets(PHOTO_SIZE, "corners")
    g = np.array([[0.0, 0.0, 1.0], [w, h, 1.0]]) @ G.T
    assert np.allclose(g[:, :2] / g[:, 2:], [[-100.0, 75.0], [100.0, -75.0]])
    # An unknown heading leaves the view unrotated (north up).
    unknown = Camera(0.0, 0.0, altitude_m=100.0, heading_deg=None, tilt_deg=0.0, hfov_deg=90.0)
    assert np.array_equal(unknown.rotation(), nadir.rotation())


def test_refinement_recovers_footprint_and_heading(sat):
    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=120.0, tilt_deg=20.0, hfov_deg=70.0, heading_deg=57.0)
    photo, truth = synthetic_photo(ds, crs, (x0 - 150, y0 + 80), cam)
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(photo)  # no camera: the matcher must find rotation and perspective itself
    cx, cy = truth["centre"] + np.array([35.0, -25.0])  # a retrieval candidate nearby
    match = m.match(cx, cy, 150.0)
    assert match.ok, match.reason
    err = math.hypot(match.x - truth["centre"][0], match.y - truth["centre"][1])
    assert err < 3.0, err
    assert abs((match.heading_deg - 57.0 + 180) % 360 - 180) < 2.0
    corners = np.array(match.footprint[:4])
    assert np.linalg.norm(corners - truth["footprint"], axis=1).max() < 8.0
    # The stated uncertainty is honest: the error lies within a few sigma of it.
    assert 0 < match.centre_sigma_m < 10 and err < 4 * match.centre_sigma_m + 1.0
    assert match.inliers >= refine.MIN_INLIERS and match.confidence > 0.3


def test_refinement_with_the_camera_prior_is_as_good(sat):
    """The photo warped to the ground first (altitude, pitch and heading known)."""
    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=90.0, tilt_deg=30.0, hfov_deg=65.0, heading_deg=300.0)
    photo, truth = synthetic_photo(ds, crs, (x0 + 200, y0 - 120), cam)
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(photo, cam)
    match = m.match(*(truth["centre"] + np.array([-30.0, 20.0])), 100.0)
    assert match.ok, match.reason
    assert math.hypot(match.x - truth["centre"][0], match.y - truth["centre"][1]) < 3.0
    assert abs((match.heading_deg - 300.0 + 180) % 360 - 180) < 2.0


def test_refinement_on_a_raster_in_another_crs(sat, tmp_path):
    """Imagery in Web Mercator, grid in UTM: the matcher reads through a warped window."""
    from osgeo import gdal

    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=120.0, tilt_deg=20.0, hfov_deg=70.0, heading_deg=57.0)
    photo, truth = synthetic_photo(ds, crs, (x0 - 150, y0 + 80), cam)
    web = tmp_path / "web.tif"
    gdal.Warp(str(web), str(SAT), dstSRS="EPSG:3857", outputBoundsSRS=crs.to_wkt(),
              outputBounds=(x0 - 600, y0 - 500, x0 + 300, y0 + 500))  # fmt: skip
    m = refine.Matcher(str(web), crs)
    m.set_photo(photo)
    match = m.match(*(truth["centre"] + np.array([35.0, -25.0])), 150.0)
    assert match.ok, match.reason
    assert math.hypot(match.x - truth["centre"][0], match.y - truth["centre"][1]) < 3.0


def _candidate(rank: int, x: float, y: float, score: float) -> L.Candidate:
    return L.Candidate(rank=rank, score=score, probability=0.1, x=x, y=y, lon=0.0, lat=0.0,
                       size_m=150.0, footprint=tiling.chip_polygon(x, y, 150.0), chip_ids=[rank],
                       chip_scores=[score], rotation=0, retrieval_rank=rank)  # fmt: skip


def test_rerank_moves_the_true_candidate_from_5_to_1(sat):
    ds, crs, (x0, y0) = sat
    cam = Camera(0.0, 0.0, altitude_m=130.0, tilt_deg=15.0, hfov_deg=70.0, heading_deg=200.0)
    photo, truth = synthetic_photo(ds, crs, (x0 + 300, y0 + 300), cam)
    tx, ty = truth["centre"]
    # Four wrong places far from the truth score higher by retrieval; the truth is 5th.
    wrong = [(x0 - 600, y0 - 600), (x0 + 700, y0 - 500), (x0 - 500, y0 + 650), (x0 - 650, y0)]
    cands = [_candidate(i + 1, x, y, 0.9 - 0.05 * i) for i, (x, y) in enumerate(wrong)]
    cands.append(_candidate(5, tx + 20, ty - 30, 0.6))
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(photo)
    out = refine.rerank(cands, m, top_n=5)
    assert out[0].retrieval_rank == 5 and out[0].rank == 1
    assert out[0].method == "refined" and out[0].match.ok
    assert math.hypot(out[0].x - tx, out[0].y - ty) < 3.0
    # The others failed their match: flagged, their retrieval score and order kept.
    rest = out[1:]
    assert [c.retrieval_rank for c in rest] == [1, 2, 3, 4]
    assert all(c.method == "reranked" and not c.match.ok and c.match.reason for c in rest)
    assert [c.score for c in rest] == [0.9, 0.85, 0.8, 0.75]


def test_featureless_photo_keeps_retrieval_order(sat):
    _ds, crs, (x0, y0) = sat
    flat = np.full((480, 640, 3), 128, np.uint8)
    cands = [_candidate(i + 1, x0 + 200 * i, y0, 0.8 - 0.1 * i) for i in range(3)]
    m = refine.Matcher(str(SAT), crs)
    m.set_photo(flat)
    out = refine.rerank(cands, m, top_n=3)
    assert [c.retrieval_rank for c in out] == [1, 2, 3]
    assert all(not c.match.ok and "features" in c.match.reason for c in out)
    assert all(c.x == x0 + 200 * i for i, c in enumerate(out))  # not moved


@pytest.fixture()
def moved_index(tiny_bundle, utm_raster, tmp_path):
    raster = tmp_path / "imagery.tif"
    shutil.copy(utm_raster, raster)
    out = tmp_path / "index"
    build_index(Encoders(Bundle.load(tiny_bundle)), raster, out)
    return out, raster


def test_moved_raster_falls_back_to_retrieval_once(tiny_bundle, moved_index, tmp_path):
    index_dir, raster = moved_index
    index = Index.open(index_dir, Bundle.load(tiny_bundle))
    matcher, why = L.matcher_for(index)
    assert matcher is not None and why is None
    raster.rename(tmp_path / "elsewhere.tif")
    matcher, why = L.matcher_for(index)
    assert matcher is None and "no longer there" in why and str(raster) in why
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(np.asarray(_texture()), cv2.COLOR_RGB2BGR))
    r = run_cli("geobridge_qgis", "locate", "--bundle", tiny_bundle, "--index", index_dir,
                "--photo", photo, "--photo", photo, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("no longer there") == 1  # said once, not per photo
    rows = json.loads(r.stdout)
    assert rows and {c["method"] for c in rows} == {"retrieval"}


def _texture():
    from conftest import textured

    return textured(240, 320, seed=5)


def test_changed_raster_is_refused(tiny_bundle, moved_index):
    index_dir, raster = moved_index
    from conftest import textured, write_geotiff

    write_geotiff(raster, textured(600, 600, seed=9))  # same path, other pixels and size
    index = Index.open(index_dir, Bundle.load(tiny_bundle))
    matcher, why = L.matcher_for(index)
    assert matcher is None and "changed since the index was built" in why


# ---------------------------------------------------------------- priors


def _meta(index: Index, **kw) -> PhotoMeta:
    x, y = float(index.cx[len(index.cx) // 2]), float(index.cy[len(index.cy) // 2])
    lon, lat = Transformer.from_crs(index.crs, 4326, always_xy=True).transform(x, y)
    return PhotoMeta(lon=lon, lat=lat, **kw), (x, y)


def test_priors_restrict_and_order_as_stated(tiny_bundle, tiny_index):
    bundle = Bundle.load(tiny_bundle)
    index = Index.open(tiny_index, bundle)
    enc = Encoders(bundle)
    img = np.asarray(_texture())
    meta, (x, y) = _meta(index, altitude_m=60.0, pitch_deg=-90.0, heading_deg=100.0,
                         focal_35mm=24.0, gps_accuracy_m=5.0)  # fmt: skip
    base = L.QueryOptions(top_k=50, heatmap=False, rerank=False)

    def run(priors, m=meta):
        return L.locate_query(index, enc, img, m, None, replace(base, priors=priors))

    none = run(NO_PRIORS)
    assert none.priors_used == [] and {c.size_m for c in none.candidates} == {100.0, 150.0}

    gps = run(PriorOptions(True, False, False))
    assert gps.priors_used == ["gps"]
    # Without the heading prior the circle is widened by altitude * tan(45 deg).
    pri = priors_for(meta, (320, 240), PriorOptions(True, False, False))
    reach = pri.radius_m + 150 * math.sqrt(0.5)
    assert gps.candidates and all(math.hypot(c.x - x, c.y - y) <= reach + 1 for c in gps.candidates)
    assert len(gps.candidates) < len(none.candidates)

    # 60 m up with a 24 mm lens: a footprint of ~100 m across -> the 100 m chips only.
    alt = run(PriorOptions(False, True, False))
    assert alt.priors_used == ["altitude"] and {c.size_m for c in alt.candidates} == {100.0}

    # Heading 100 deg (camera facing east-south-east): turned 270 deg counter-clockwise.
    head = run(PriorOptions(False, False, True))
    assert head.priors_used == ["heading"] and {c.rotation for c in head.candidates} == {270}
    assert {c.rotation for c in none.candidates} != {270}

    # A GPS fix outside the index: said, and ignored rather than leaving nothing.
    far = PhotoMeta(lon=meta.lon + 1.0, lat=meta.lat)
    out = run(PriorOptions(), far)
    assert "gps" not in out.priors_used and any("outside the index" in n for n in out.notes)
    assert len(out.candidates) == len(none.candidates)


def test_priors_from_an_oblique_photo_look_ahead():
    meta = PhotoMeta(lon=11.5, lat=53.0, altitude_m=100.0, pitch_deg=-60.0, heading_deg=90.0)
    on = priors_for(meta, (640, 480), PriorOptions())
    # 30 degrees off nadir at 100 m: the view centre is ~58 m east of the drone.
    geod_e = (on.centre_lonlat[0] - 11.5) * 111_320 * math.cos(math.radians(53.0))
    assert abs(geod_e - 100 * math.tan(math.radians(30))) < 1.0
    assert on.radius_m < 40 and on.camera is not None and on.camera.heading_deg == 90.0
    off = priors_for(meta, (640, 480), PriorOptions(heading=False))
    assert off.centre_lonlat == (11.5, 53.0) and off.radius_m > 100  # widened instead
    assert off.camera is not None and off.camera.heading_deg is None
    assert priors_for(PhotoMeta(), (640, 480), PriorOptions()).used == []
    assert len(priors_for(PhotoMeta(), (640, 480), PriorOptions()).notes) == 3


def test_demo_photo_metadata_gives_the_view_centre():
    """EXIF/XMP of a rendered drone photo -> priors: the look-ahead puts the expected centre
    within GPS error of the truth, and the circle holds it."""
    import csv

    from PIL import Image

    from geobridge_qgis.core.geodesy import haversine_m
    from geobridge_qgis.core.photo import read_photo_with_meta, xmp_packet

    world = ROOT / "resources" / "demo" / "world"
    with open(world / "drone" / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:8]
    for row in rows:
        img, meta = read_photo_with_meta(world / "drone" / row["file"])
        # Height above take-off from XMP; the EXIF GPS altitude (above sea level) is kept apart.
        assert abs(meta.altitude_m - float(row["altitude_m"])) < 1.5
        assert float(meta.extra["gps_altitude_m"]) > meta.altitude_m
        assert abs(meta.pitch_deg - (float(row["pitch_deg"]) - 90)) < 0.01
        pri = priors_for(meta, (img.shape[1], img.shape[0]), PriorOptions())
        assert pri.used == ["heading", "altitude", "gps"]
        miss = haversine_m(*pri.centre_lonlat, float(row["lon"]), float(row["lat"]))
        assert miss < 15.0 and miss < pri.radius_m, (row["file"], miss, pri.radius_m)
    # Older Pillow (9.4, QGIS 3.22's on Debian 12) keeps XMP only in the raw APP1 segment.
    with Image.open(world / "drone" / rows[0]["file"]) as im:
        im.info.pop("xmp", None)
        assert b"GimbalYawDegree" in xmp_packet(im)
