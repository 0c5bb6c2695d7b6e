"""The synthetic metadata's error model (synthworld.metadata_errors) and near-horizon photos.

Statistics are measured on seeded draws; the in-memory PhotoMeta the evaluation uses is
compared with what the engine's reader reads from a file written with the same errors.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from geobridge_qgis.core.camera import Camera, focal_35mm_from_hfov
from geobridge_qgis.core.photo import read_photo_with_meta
from synthworld.__main__ import main
from synthworld.metadata_errors import (
    MetadataErrors,
    draw,
    noisy_meta,
    photo_rng,
    written_values,
)
from synthworld.photo_metadata import save_photo
from synthworld.world import World

N = 6000


def _draws(errors: MetadataErrors, seed: int = 1):
    return [draw(errors, photo_rng(seed, i)) for i in range(N)]


def test_error_model_statistics_match_its_settings():
    e = MetadataErrors()
    d = _draws(e)
    jump = np.array([n.gps_jump for n in d])
    assert jump.mean() == pytest.approx(e.gps_jump_rate, abs=0.01)
    dx = np.array([n.gps_dx_m for n in d])[~jump]
    dy = np.array([n.gps_dy_m for n in d])[~jump]
    assert dx.std() == pytest.approx(e.gps_sigma_m, rel=0.05) and abs(dx.mean()) < 0.15
    assert dy.std() == pytest.approx(e.gps_sigma_m, rel=0.05)
    err = np.array([n.gps_error_m for n in d])
    lo, hi = e.gps_jump_m
    assert (err[jump] > lo - 4 * e.gps_sigma_m).all() and (err[jump] < hi + 4 * e.gps_sigma_m).all()
    yaw = np.array([n.yaw_error_deg for n in d])
    assert yaw.std() == pytest.approx(e.yaw_sigma_deg, rel=0.05)
    flight = np.array([n.flight_yaw_error_deg for n in d])
    assert flight.std() == pytest.approx(e.flight_yaw_sigma_deg, rel=0.05)
    assert np.corrcoef(yaw, flight)[0, 1] == pytest.approx(0.0, abs=0.05)  # they differ
    assert np.std([n.pitch_error_deg for n in d]) == pytest.approx(e.pitch_sigma_deg, rel=0.05)
    alt = np.array([n.rel_alt_error_m for n in d])
    assert alt.std() == pytest.approx(math.hypot(e.baro_sigma_m, e.takeoff_dz_sigma_m), rel=0.05)
    assert {n.level for n in d} == {"full"}
    # Seeded: the same seed draws the same errors, another seed others.
    assert _draws(e)[:50] == d[:50] and _draws(e, 2)[:50] != d[:50]


def test_levels_shares_fixed_yaw_and_exact():
    d = _draws(MetadataErrors(share_none=0.2, share_gps_only=0.3))
    levels = np.array([n.level for n in d])
    assert np.mean(levels == "none") == pytest.approx(0.2, abs=0.02)
    assert np.mean(levels == "gps") == pytest.approx(0.3, abs=0.02)
    # A photo's errors do not depend on its level (the same draws whatever the shares).
    full = _draws(MetadataErrors())
    assert [n.gps_dx_m for n in d[:20]] == [n.gps_dx_m for n in full[:20]]
    fixed = _draws(replace(MetadataErrors(), yaw_error_deg=20.0))
    yaw = np.array([n.yaw_error_deg for n in fixed])
    assert set(np.abs(yaw)) == {20.0} and 0.45 < np.mean(yaw > 0) < 0.55
    exact = _draws(MetadataErrors.exact())[:200]
    assert all(n.gps_error_m == 0 and n.yaw_error_deg == 0 and n.rel_alt_error_m == 0
               and n.pitch_error_deg == 0 for n in exact)  # fmt: skip
    with pytest.raises(ValueError, match="gps_sigma_m"):
        replace(MetadataErrors(), gps_sigma_m=-1.0).check()
    with pytest.raises(ValueError, match="share"):
        MetadataErrors(share_none=0.7, share_gps_only=0.5).check()


@pytest.mark.parametrize("level", ["full", "gps"])
def test_in_memory_metadata_is_what_the_reader_reads_from_the_file(tmp_path, level):
    world = World.generate(5, 500)
    cam = Camera(world.bounds[0] + 200, world.bounds[1] + 250, 97.0, 250.0, 33.0, 68.0)
    errors = MetadataErrors().with_level(level)
    noise = draw(errors, photo_rng(77, 3))
    v = written_values(cam, noise, world.ground_elevation_m)
    lon, lat = world.to_lonlat(v["gx"], v["gy"])
    import datetime as dt

    meta = {"lon": float(lon), "lat": float(lat), "gps_alt": v["gps_alt"], "rel_alt": v["rel_alt"],
            "yaw": v["yaw"], "flight_yaw": v["flight_yaw"], "pitch": v["pitch"],
            "when": dt.datetime(2025, 5, 1, 10), "flight": (0.0, 1.0, -1.0)}  # fmt: skip
    img = np.full((480, 640, 3), 90, np.uint8)
    save_photo(tmp_path / "p.jpg", img, cam, meta, xmp=level == "full")
    _, read = read_photo_with_meta(tmp_path / "p.jpg")
    f35 = read.focal_35mm
    assert f35 == round(focal_35mm_from_hfov(68.0, 640, 480))
    mem = noisy_meta(cam, noise, world.to_lonlat, f35)
    assert read.lon == pytest.approx(mem.lon, abs=1e-7) and read.lat == pytest.approx(
        mem.lat, abs=1e-7
    )
    for key in ("altitude_m", "heading_deg", "pitch_deg", "gimbal_yaw_deg", "flight_yaw_deg"):
        a, b = getattr(read, key), getattr(mem, key)
        assert (a is None and b is None) or a == pytest.approx(b, abs=0.006), key
    assert read.altitude_ref == mem.altitude_ref
    if level == "gps":
        assert read.altitude_m is None and read.heading_deg is None


def test_near_horizon_world_sky_haze_and_truth(tmp_path):
    """Cameras up to 85 degrees off nadir: drawn low enough to see their view centre, the
    ground drawn to the far range, sky above the horizon; truth says what was true and what
    the metadata got wrong."""
    args = ["synth", "--seed", "31", "--size-km", "0.6", "--photos", "3", "--gsd", "1",
            "--tilt", "78", "85", "--altitude", "20", "60", "--share-gps-only", "1",
            "--yaw-error-deg", "10", "--out", str(tmp_path / "w")]  # fmt: skip
    assert main(args) == 0
    with open(tmp_path / "w" / "drone" / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for r in rows:
        assert 78 <= float(r["pitch_deg"]) <= 85 and 20 <= float(r["altitude_m"]) <= 60
        assert r["meta_level"] == "gps" and abs(float(r["yaw_error_deg"])) == 10.0
        img = np.asarray(Image.open(tmp_path / "w" / "drone" / r["file"]), np.float32)
        top, bottom = img[:40], img[-40:]
        # The sky is bright and even; the ground near the drone is not.
        assert top.mean() > 150 and top.std() < 25 and bottom.std() > top.std()
        _, meta = read_photo_with_meta(tmp_path / "w" / "drone" / r["file"])
        assert meta.lon is not None and meta.pitch_deg is None  # GPS only
    assert main(["synth", "--seed", "1", "--size-km", "0.6", "--tilt", "0", "89",
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
