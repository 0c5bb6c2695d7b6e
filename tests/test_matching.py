"""The matcher's geometry and features (core.refine, core.features, core.photo_view): pixel
conventions to a fraction of a pixel, SIFT's duplicate keypoints, oblique and near-horizon
views, and a compass that is off.

Photos here are made from the demo world's satellite raster through the camera model itself
(each photo pixel centre ray-cast to the ground and sampled from the raster at that point), so
the truth is exact to the interpolation: no half-pixel conventions of a warp in between.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import ROOT
from pyproj import CRS

from geobridge_qgis.core import features, photo_view, refine, tiling
from geobridge_qgis.core.camera import Camera

SAT = ROOT / "resources" / "demo" / "world" / "satellite.tif"
SKY = (200, 210, 230)


@pytest.fixture(scope="module")
def sat():
    ds = tiling.open_raster(SAT)
    gt = ds.GetGeoTransform()
    arr = np.moveaxis(ds.ReadAsArray(), 0, -1)
    centre = (gt[0] + gt[1] * ds.RasterXSize / 2, gt[3] + gt[5] * ds.RasterYSize / 2)
    return arr, gt, CRS.from_wkt(ds.GetProjection()), centre


def exact_photo(sat, camera: Camera, size=(640, 480)) -> np.ndarray:
    """The raster as `camera` (in the raster's CRS) sees it; sky where rays miss the ground."""
    arr, gt, _crs, _ = sat
    w, h = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.intrinsics(size)).T
    world = rays @ camera.rotation()  # camera -> (east, north, up)
    down = world[..., 2] < -1e-3
    t = np.where(down, camera.altitude_m / np.where(down, -world[..., 2], 1.0), 0.0)
    x, y = camera.x + t * world[..., 0], camera.y + t * world[..., 1]
    col = ((x - gt[0]) / gt[1] - 0.5).astype(np.float32)  # raster pixel centres
    row = ((y - gt[3]) / gt[5] - 0.5).astype(np.float32)
    out = cv2.remap(arr, col, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[~down] = SKY
    return out


def _matcher(sat, features: str = "auto") -> refine.Matcher:
    return refine.Matcher(str(SAT), sat[2], features=features)


@pytest.mark.parametrize("heading", [0.0, 90.0, 225.0])
def test_centre_has_no_half_pixel_bias(sat, heading):
    """Nadir, 0.5 m per photo pixel like the raster, exact metadata: the refined centre lands
    on the truth to a few centimetres (a half-pixel slip of the window or of the photo's
    centre costs 0.25-0.35 m, turning with the heading)."""
    x0, y0 = sat[3]
    cam = Camera(x0 - 140.0, y0 + 90.0, 200.0, heading, 0.0, 77.3)
    photo = exact_photo(sat, cam)
    m = _matcher(sat)
    m.set_photo(photo, replace(cam, x=0.0, y=0.0))
    truth = np.array(cam.centre_ground())
    r = m.match(truth[0] + 11.0, truth[1] - 7.0, 150.0, 320.0)
    assert r.ok, r.reason
    assert math.hypot(r.x - truth[0], r.y - truth[1]) < 0.12, (r.x - truth[0], r.y - truth[1])
    assert abs((r.heading_deg - heading + 180) % 360 - 180) < 0.2


def test_upright_keypoints_are_one_per_place_and_survive_the_ratio_test(sat):
    """SIFT gives one location several orientations; described upright the copies are
    identical and would veto each other in Lowe's ratio test."""
    arr = sat[0][1500:1900, 1500:1900]
    g = features.grey(arr)
    kps = features.detect(g)
    places = {(round(k.pt[0], 2), round(k.pt[1], 2)) for k in kps}
    assert len(places) < len(kps)  # SIFT does return duplicates
    upright, rotinv = features.describe(g, kps, [0.0, None])
    assert len(upright.points) == len(places)
    assert len(np.unique(np.round(upright.points, 2), axis=0)) == len(upright.points)
    assert len(rotinv.points) == len(kps)  # rotation-invariant: orientations differ, kept
    # Matched against itself with every keypoint doubled (as duplicates would be): every
    # keypoint still finds itself, past its twin.
    twin = features.Described(np.vstack([upright.points, upright.points]),
                              np.vstack([upright.desc, upright.desc]))  # fmt: skip
    qi, ti = features.ratio_matches(upright, twin, 0.8)
    assert len(qi) > 0.95 * len(upright.points)
    assert (ti % len(upright.points) == qi).mean() > 0.99


def test_ground_part_stops_short_of_the_horizon():
    size = (640, 480)
    assert Camera(0, 0, 100.0, 0.0, 0.0, 73.7).ground_rows(size, 68.0) == -0.5
    cam = Camera(0, 0, 100.0, 0.0, 80.0, 73.7)
    top = cam.ground_rows(size, 68.0)
    assert 240 < top < 479  # the lower part of the frame only
    # That row's ground lies 72 degrees off nadir, altitude * tan(72) ahead.
    g = cam.ground_points(np.array([[319.5, top]]), size)[0]
    assert abs(g[1] - 100.0 * math.tan(math.radians(68.0))) < 0.5
    assert Camera(0, 0, 100.0, 0.0, 89.0, 73.7).ground_rows(size, 68.0) > top


@pytest.mark.parametrize("tilt", [45.0, 62.0, 78.0])
def test_oblique_and_near_horizon_views_are_refined(sat, tilt):
    """The footprint check takes the camera model's footprint (clipped below the horizon):
    a correct oblique match is accepted, the centre found where the optical axis meets the
    ground."""
    x0, y0 = sat[3]
    cam = Camera(x0 - 100.0, y0 - 60.0, 110.0, 35.0, tilt, 73.7)
    photo = exact_photo(sat, cam)
    m = _matcher(sat)
    meta = replace(cam, x=0.0, y=0.0)
    m.set_photo(photo, meta)
    truth = np.array(cam.centre_ground())
    r = m.match(truth[0] + 10.0, truth[1] + 10.0, 150.0, None)
    assert r.ok, r.reason
    # Farther ahead, a pixel of error in the far ground is metres: allow for the distance.
    ahead = 110.0 * math.tan(math.radians(tilt))
    assert math.hypot(r.x - truth[0], r.y - truth[1]) < 2.0 + 0.01 * ahead
    # The footprint is the ground part's: it ends 72 degrees off nadir, short of the horizon.
    far = np.array(r.footprint[:4]) - [cam.x, cam.y]
    assert np.linalg.norm(far, axis=1).max() < 110.0 * math.tan(math.radians(68.0)) * 1.5
    quad = np.array(r.footprint[:4])
    predicted = photo_view.ground_area_m2(meta, (640, 480), 0.0)
    assert 0.8 < abs(cv2.contourArea(np.float32(quad))) / predicted < 1.25


@pytest.mark.parametrize("yaw_error", [0.0, -20.0, 30.0])
@pytest.mark.parametrize("kind", ["sift", "auto"])
def test_a_wrong_compass_does_not_switch_matching_off(sat, yaw_error, kind):
    x0, y0 = sat[3]
    cam = Camera(x0 + 180.0, y0 - 130.0, 120.0, 140.0, 20.0, 70.0)
    photo = exact_photo(sat, cam)
    f = photo.astype(np.float32) / 255  # another sensor: gains and a gamma
    photo = (np.clip(f**0.8 * np.array([1.1, 0.95, 0.85]), 0, 1) * 255).astype(np.uint8)
    m = _matcher(sat, kind)
    m.set_photo(photo, replace(cam, x=0.0, y=0.0, heading_deg=140.0 + yaw_error))
    truth = np.array(cam.centre_ground())
    r = m.match(truth[0] - 12.0, truth[1] + 9.0, 150.0, None)
    assert r.ok, r.reason
    assert math.hypot(r.x - truth[0], r.y - truth[1]) < 2.0
    assert abs((r.heading_deg - 140.0 + 180) % 360 - 180) < 2.0  # the true heading, not the tag


def test_unknown_features_name_is_refused(sat):
    from geobridge_qgis.core.errors import UserError

    with pytest.raises(UserError, match="features 'orb'"):
        refine.Matcher(str(SAT), sat[2], features="orb")


@pytest.mark.parametrize(("turn", "heading"), [(5.0, 0.0), (60.0, 0.0), (60.0, None)])
def test_similarity_fallback_finds_few_true_matches_and_keeps_the_yaw_gate(sat, turn, heading):
    """Ten matches that agree by a turn and a scale near 1, among fifty random ones: the
    similarity finds them (and a homography on them) when the turn is within the yaw error,
    and refuses a turn beyond it; without a compass any turn goes (the view is not north-up)."""
    m = _matcher(sat, "sift")
    m._camera = Camera(0.0, 0.0, 100.0, heading, 0.0, 70.0)
    corners = np.float64([[0, 0], [399, 0], [399, 399], [0, 399]])
    view = photo_view.PhotoView(np.zeros((400, 400, 3), np.uint8), None, np.eye(3), corners, 0.5)
    window = refine._Window(np.zeros((800, 800, 3), np.uint8), 0.0, 400.0, 0.5)
    rng = np.random.default_rng(3)
    good = rng.uniform(20, 380, (10, 2))
    a = math.radians(turn)
    rot = 1.05 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pv = np.vstack([good, rng.uniform(0, 400, (50, 2))]).astype(np.float32)
    dst = np.vstack([good @ rot.T + [200, 150], rng.uniform(0, 800, (50, 2))]).astype(np.float32)
    out = m._similar(pv, pv, dst, view, window)
    if heading is not None and turn > refine.YAW_ERROR_DEG + 5:
        assert out is None
        return
    H, inl = out
    assert inl[:10].all() and inl[10:].sum() <= 2
    back = cv2.perspectiveTransform(np.float64(good).reshape(-1, 1, 2), H).reshape(-1, 2)
    assert np.abs(back - (good @ rot.T + [200, 150])).max() < 0.5


@pytest.mark.parametrize("offset", [(-140.0, 90.0), (300.0, -200.0), (-400.0, -350.0)])
def test_dense_alignment_places_a_photo_local_features_cannot(sat, offset, monkeypatch):
    """Blurred and with its colours inverted (another season, another sensor), the photo keeps
    its edges but loses the local features' matches; aligned densely it lands on the truth,
    and 500 m away nothing is accepted."""
    x0, y0 = sat[3]
    cam = Camera(x0 + offset[0], y0 + offset[1], 120.0, 30.0, 20.0, 70.0)
    photo = 255 - cv2.GaussianBlur(exact_photo(sat, cam), (0, 0), 3)[..., ::-1]
    truth = np.array(cam.centre_ground())
    out = {}
    for dense in (False, True):
        monkeypatch.setattr(refine, "DENSE", dense)
        m = _matcher(sat)
        m.set_photo(photo, replace(cam, x=0.0, y=0.0))
        out[dense] = m.match(truth[0] + 11.0, truth[1] - 7.0, 150.0)
        assert not m.match(truth[0] + 400.0, truth[1] - 300.0, 150.0).ok
    assert not out[False].ok
    r = out[True]
    assert r.ok and r.method.startswith("dense"), r.reason
    assert math.hypot(r.x - truth[0], r.y - truth[1]) < 0.5
    assert abs((r.heading_deg - 30.0 + 180) % 360 - 180) < 1.0
    assert 0 < r.centre_sigma_m < 2.0


def test_an_oblique_photo_is_not_aligned_densely_through_a_pitch_error(sat, monkeypatch):
    """65 deg off nadir with the gimbal's pitch 2 deg off (a common error): the warped ground is
    stretched along the view, and dense alignment would accept a place about 10 m off (on a
    clear-enough peak); above DENSE_MAX_TILT_DEG it is not tried, and the photo stays unplaced
    by the matcher (its metadata still places it)."""
    x0, y0 = sat[3]
    cam = Camera(x0 - 200.0, y0 + 120.0, 80.0, 30.0, 65.0, 70.0)
    photo = 255 - cv2.GaussianBlur(exact_photo(sat, cam), (0, 0), 3)[..., ::-1]
    truth = np.array(cam.centre_ground())
    told = replace(cam, x=0.0, y=0.0, tilt_deg=67.0)
    out, default = {}, refine.DENSE_MAX_TILT_DEG
    for limit in (default, 90.0):
        monkeypatch.setattr(refine, "DENSE_MAX_TILT_DEG", limit)
        m = _matcher(sat)
        m.set_photo(photo, told)
        out[limit] = m.match(truth[0] + 11.0, truth[1] - 7.0, 150.0, radius_m=25.0)
    lifted = out[90.0]
    assert lifted.ok and lifted.method.startswith("dense")
    assert math.hypot(lifted.x - truth[0], lifted.y - truth[1]) > 5.0  # what the limit avoids
    assert not out[default].ok
