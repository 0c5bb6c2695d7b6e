"""The synthetic world: generator, renderer (ortho and drone camera), `synth` output on disk.

Small worlds (0.5-1 km) keep the file fast. The geometry tests compare renders with each other
and with the written GeoTIFF, so they prove the footprints, not only that something ran.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from conftest import run_cli
from osgeo import gdal, osr
from PIL import Image
from shapely import wkt as shapely_wkt
from shapely.geometry import Point, Polygon, box

from geobridge_qgis.core.camera import Camera
from synthworld.__main__ import main
from synthworld.describe import describe
from synthworld.photo_metadata import focal_lengths
from synthworld.render import (
    Style,
    random_camera,
    render_drone,
    render_ortho,
    render_texture,
)
from synthworld.synth import synth
from synthworld.world import (
    Building,
    BuildingPart,
    Rect,
    World,
    feature_geometry,
    iter_features,
    utm_epsg,
)

SEED, OTHER, KM, PHOTOS = 5, 6, 0.5, 6
HOUSE_WORDS = re.compile(r"\b(house|houses|home|homes|buildings?|halls?|church)\b")


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three worlds on disk: `a` through the command line, `b` the same seed in-process, `c`
    another seed."""
    root = tmp_path_factory.mktemp("synth")
    args = ("--seed", SEED, "--size-km", KM, "--photos", PHOTOS)
    r = run_cli("synthworld", "synth", *args, "--out", root / "a")
    assert r.returncode == 0, r.stderr
    synth(SEED, KM, root / "b", photos=PHOTOS, log=_quiet)
    synth(OTHER, KM, root / "c", photos=PHOTOS, log=_quiet)
    return root


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(SEED, KM * 1000)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _truth(folder: Path) -> list[dict]:
    with open(folder / "drone" / "truth.csv", newline="") as f:
        return list(csv.DictReader(f))


def _grey(img: np.ndarray, size=(64, 48)) -> np.ndarray:
    g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA).ravel()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _utm_polygon(world: World, footprint_wkt: str) -> Polygon:
    ll = np.asarray(shapely_wkt.loads(footprint_wkt).exterior.coords)
    x, y = world.from_lonlat(ll[:, 0], ll[:, 1])
    return Polygon(np.c_[x, y])


def _camera_from_truth(world: World, row: dict, hfov: float) -> Camera:
    """The camera that took a photo, from truth.csv (its centre is ahead of the drone)."""
    cx, cy = world.from_lonlat(float(row["lon"]), float(row["lat"]))
    alt, hdg, pitch = float(row["altitude_m"]), float(row["heading_deg"]), float(row["pitch_deg"])
    d = alt * math.tan(math.radians(pitch))
    h = math.radians(hdg)
    return Camera(cx - d * math.sin(h), cy - d * math.cos(h), alt, hdg, pitch, hfov)


# ------------------------------------------------------------------------------------- output


def test_same_seed_same_bytes_other_seed_differs(runs):
    a, b, c = _files(runs / "a"), _files(runs / "b"), _files(runs / "c")
    expected = {"satellite.tif", "scene.gpkg", "drone/truth.csv", "text/descriptions.csv"}
    expected |= {f"drone/drone_{i:03d}.jpg" for i in range(PHOTOS)}
    assert set(a) == expected
    assert a == b  # the command line and the library, byte for byte (the GeoPackage too)
    for name in expected - {"scene.gpkg"}:
        assert a[name] != c[name], name
    assert not list(runs.glob(".*partial*"))  # no temporary folder left behind


def test_satellite_is_georeferenced(runs, world):
    ds = gdal.Open(str(runs / "a" / "satellite.tif"))
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    assert srs.GetAuthorityCode(None) == str(world.epsg) == str(utm_epsg(*world.centre_lonlat))
    xmin, ymin, _, ymax = world.bounds
    assert ds.GetGeoTransform() == (xmin, 0.5, 0.0, ymax, 0.0, -0.5)
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (1000, 1000, 3)
    assert xmin == int(xmin) and ymin == int(ymin)  # snapped to whole metres
    band = ds.GetRasterBand(1)
    assert band.GetBlockSize() == [256, 256]
    assert band.GetOverviewCount() == 4
    assert band.GetOverview(3).XSize == math.ceil(1000 / 16)
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "YCbCr JPEG"
    img = ds.ReadAsArray()
    assert img.std() > 15  # a landscape, not a flat colour


def test_truth_rows_are_consistent(runs, world):
    rows = _truth(runs / "a")
    assert len(rows) == PHOTOS
    ll = np.array([world.to_lonlat(x, y) for x, y in box(*world.bounds).exterior.coords])
    world_ll = Polygon(ll)
    for row in rows:
        fp = _utm_polygon(world, row["footprint_wkt"])
        centre = Point(world.from_lonlat(float(row["lon"]), float(row["lat"])))
        assert fp.is_valid and fp.area > 1000
        assert fp.contains(centre)
        assert world.box.buffer(0.01).contains(fp)
        assert world_ll.contains(Point(float(row["lon"]), float(row["lat"])))
        assert 60 <= float(row["altitude_m"]) <= 200 and 0 <= float(row["pitch_deg"]) <= 35
        assert len(row["lon"].split(".")[1]) >= 7


def test_exif_and_xmp_match_the_truth(runs, world):
    positions = []
    for row in _truth(runs / "a"):
        im = Image.open(runs / "a" / "drone" / row["file"])
        assert im.size == (640, 480)
        ex = im.getexif()
        sub, gps = ex.get_ifd(0x8769), ex.get_ifd(0x8825)
        assert ex[0x010F] == "GeoBridgeSynth" and re.match(r"\d{4}:\d\d:\d\d \d\d:", sub[0x9003])
        lat = sum(float(v) / 60**i for i, v in enumerate(gps[2])) * (1 if gps[1] == "N" else -1)
        lon = sum(float(v) / 60**i for i, v in enumerate(gps[4])) * (1 if gps[3] == "E" else -1)
        xmp = im.info["xmp"].decode()
        tag = {k: float(v) for k, v in re.findall(r'drone-dji:(\w+)="([-+0-9.]+)"', xmp)}
        # The focal length gives the field of view; with the truth it gives the camera back.
        hfov = math.degrees(2 * math.atan(13.2 / 2 / float(sub[0x920A])))
        assert sub[0xA405] == focal_lengths(hfov)[1]
        cam = _camera_from_truth(world, row, hfov)
        gx, gy = world.from_lonlat(lon, lat)
        err = math.hypot(gx - cam.x, gy - cam.y)
        # What the error model drew (truth.csv) is what the file says, and it is noise, not
        # the truth: GPS, yaw, pitch and the altitude above the take-off point.
        assert row["meta_level"] == "full"
        assert abs(err - float(row["gps_error_m"])) < 0.05 and err > 0.01
        true_xy = world.from_lonlat(float(row["camera_lon"]), float(row["camera_lat"]))
        assert math.hypot(true_xy[0] - cam.x, true_xy[1] - cam.y) < 0.05
        yaw = float(row["heading_deg"]) + float(row["yaw_error_deg"])
        assert (tag["GimbalYawDegree"] - yaw + 0.02) % 360 < 0.04
        assert float(row["yaw_error_deg"]) != 0.0
        pitch = float(row["pitch_deg"]) - 90 + float(row["pitch_error_deg"])
        assert abs(tag["GimbalPitchDegree"] - min(pitch, 0.0)) < 0.01
        rel = float(row["altitude_m"]) + float(row["rel_alt_error_m"])
        assert abs(tag["RelativeAltitude"] - rel) < 0.011  # both rounded to 0.01
        assert abs(tag["AbsoluteAltitude"] - world.ground_elevation_m - cam.altitude_m) < 25
        assert abs(float(row["hfov_deg"]) - hfov) < 0.1
        # The footprint in truth.csv is this camera's view of the ground.
        fp = np.asarray(_utm_polygon(world, row["footprint_wkt"]).exterior.coords)[:4]
        assert np.abs(fp - cam.footprint((640, 480))).max() < 1.5
        positions.append((cam.x, cam.y))
    assert len({(round(x), round(y)) for x, y in positions}) == len(positions)


def test_no_exif_strips_metadata_keeps_pixels(runs, tmp_path):
    out = synth(SEED, KM, tmp_path / "plain", gsd=2.0, photos=2, exif=False, log=_quiet)
    for i in range(2):
        plain = Image.open(out / "drone" / f"drone_{i:03d}.jpg")
        full = Image.open(runs / "a" / "drone" / f"drone_{i:03d}.jpg")
        assert len(full.getexif()) > 0 and "xmp" in full.info
        assert len(plain.getexif()) == 0 and "xmp" not in plain.info
        assert np.array_equal(np.asarray(plain), np.asarray(full))


def test_descriptions_mention_what_is_there(runs, world):
    with open(runs / "a" / "text" / "descriptions.csv", newline="") as f:
        texts = list(csv.DictReader(f))
    rows = {r["file"]: r for r in _truth(runs / "a")}
    assert [t["drone_file"] for t in texts] == sorted(rows)
    assert len({t["text"] for t in texts}) == len(texts)
    checked = 0
    for t in texts:
        text = t["text"].lower()
        assert len(text.split()) >= 4
        fp = _utm_polygon(world, rows[t["drone_file"]]["footprint_wkt"])
        n = sum(fp.contains(b.footprint.centroid) for b in world.buildings)
        if n >= 2:
            assert HOUSE_WORDS.search(text), text
            checked += 1
        if any(r.line.intersection(fp).length > 60 for r in world.rivers):
            assert "river" in text, text
    assert checked >= 2  # the village is in most photos of this world


def test_describe_counts_and_avoids_what_is_absent():
    w = World.generate(11, 1000)
    rng = np.random.default_rng(0)
    empty = houses = None
    for x in np.arange(w.bounds[0] + 50, w.bounds[2] - 150, 40.0):
        for y in np.arange(w.bounds[1] + 50, w.bounds[3] - 150, 40.0):
            sq = box(x, y, x + 100, y + 100)
            n = sum(sq.contains(b.footprint.centroid) for b in w.query("buildings", sq.bounds))
            if n == 0 and empty is None and any(f.polygon.contains(sq) for f in w.fields):
                empty = sq
            if n == 3 and houses is None:
                houses = sq
    assert empty is not None and houses is not None
    text = describe(w, empty, rng).lower()
    assert not HOUSE_WORDS.search(text) and re.search(r"field|meadow|grass", text), text
    text = describe(w, houses, rng).lower()
    assert HOUSE_WORDS.search(text) and "three" in text, text
    # Several wordings of the same place.
    assert len({describe(w, houses, np.random.default_rng(i)) for i in range(8)}) >= 3


def test_cli_user_errors(runs, capsys):
    assert main(["synth", "--seed", "1", "--size-km", "0.5", "--out", str(runs / "a")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["synth", "--seed", "1", "--size-km", "0.05", "--out", str(runs / "z")]) == 2
    assert "--size-km" in capsys.readouterr().err
    assert not (runs / "z").exists()


def test_old_command_forwards_for_one_release(runs, capsys):
    """`python -m model_export synth` still works (deprecated): it says where the command is
    now and runs it there."""
    from model_export.__main__ import main as old_main

    assert old_main(["synth", "--seed", "1", "--size-km", "0.05", "--out", str(runs / "z")]) == 2
    err = capsys.readouterr().err
    assert "python -m synthworld synth" in err and "--size-km" in err
    assert not (runs / "z").exists()


# ------------------------------------------------------------------------------- the renderer


@pytest.mark.parametrize("heading", [0.0, 90.0])
def test_nadir_photo_is_the_satellite_crop_of_its_footprint(runs, world, heading):
    """Same world, satellite style, pitch 0: the photo is the satellite crop of its footprint
    (turned so that the heading is up); 50 m off, it is not."""
    ds = gdal.Open(str(runs / "a" / "satellite.tif"))
    sat = ds.ReadAsArray().transpose(1, 2, 0)
    xmin, _, _, ymax = world.bounds

    def crop(b):
        c0, c1 = round((b[0] - xmin) / 0.5), round((b[2] - xmin) / 0.5)
        r0, r1 = round((ymax - b[3]) / 0.5), round((ymax - b[1]) / 0.5)
        return np.rot90(sat[r0:r1, c0:c1], int(heading // 90))

    rng = np.random.default_rng(int(heading))
    for _ in range(2):
        x, y = xmin + rng.uniform(170, 330), ymax - rng.uniform(170, 330)
        cam = Camera(x, y, 130.0, heading, 0.0, 70.0)
        img, fp = render_drone(world, cam, Style.satellite(SEED), (320, 240))
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        b = fp.bounds
        good = _corr(_grey(img), _grey(crop(b)))
        off = _corr(_grey(img), _grey(crop((b[0] + 50, b[1], b[2] + 50, b[3]))))
        assert good > 0.8 and good - off > 0.4, (good, off)


def test_camera_geometry():
    alt, hfov, w, h = 100.0, 70.0, 640, 480
    half = alt * math.tan(math.radians(hfov / 2))
    fp = Camera(1000.0, 2000.0, alt, 0.0, 0.0, hfov).footprint((w, h))
    # top-left, top-right, bottom-right, bottom-left = NW, NE, SE, SW
    want = np.array([[-1, 0.75], [1, 0.75], [1, -0.75], [-1, -0.75]]) * half + [1000, 2000]
    assert np.allclose(fp, want)
    # Heading 90: the top of the image points east; its top-left corner is the north-east one.
    fp = Camera(0.0, 0.0, alt, 90.0, 0.0, hfov).footprint((w, h))
    assert np.allclose(fp[0], [0.75 * half, half])
    # Pitch tilts forward along the heading: centre ahead, top edge at tan(p + vfov/2).
    cam = Camera(0.0, 0.0, alt, 30.0, 25.0, hfov)
    cx, cy = cam.centre_ground()
    ahead = alt * math.tan(math.radians(25))
    assert np.allclose(
        [cx, cy], [ahead * math.sin(math.radians(30)), ahead * math.cos(math.radians(30))]
    )
    fwd = np.array([math.sin(math.radians(30)), math.cos(math.radians(30))])
    v_half = math.atan(math.tan(math.radians(hfov / 2)) * h / w)
    along = cam.footprint((w, h)) @ fwd
    assert np.allclose(along[:2], alt * math.tan(math.radians(25) + v_half))
    assert np.allclose(along[2:], alt * math.tan(math.radians(25) - v_half))
    # Ground points project back onto the image corners.
    uv, depth = cam.project(np.c_[cam.footprint((w, h)), np.zeros(4)], (w, h))
    assert np.allclose(uv, [[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    assert (depth > 0).all()


def _one_building_world() -> World:
    x0, y0 = 500000.0, 5500000.0
    part = BuildingPart(Rect(x0 + 100, y0 + 100, 10.0, 10.0, 0.0), 20.0, 20.0)
    building = Building((part,), "red", "house", 0.5)
    empty = ()
    return World(
        1,
        200.0,
        32632,
        (x0, y0, x0 + 200, y0 + 200),
        (9.0, 49.6),
        100.0,
        empty,
        empty,
        empty,
        empty,
        empty,
        empty,
        empty,
        empty,
        (building,),
        empty,
        empty,
        empty,
    )


def test_buildings_stand_up_when_oblique():
    """A 20 m tower seen from the south at pitch 30: its roof is drawn where z = 20 projects,
    its south wall where its foot projects; from above, its roof covers the centre."""
    w = _one_building_world()
    style = Style(noise_sigma=0.0, haze=0.0, blur_px=0.0, saturation=1.0, sun_azimuth_deg=180.0)
    cx, cy = 500100.0, 5500100.0
    roof, wall = style.colour("roof_red", 0.5, 0.18), style.colour("wall", 0.5, 0.2)
    cam = Camera(cx, cy - 70.0, 90.0, 0.0, 30.0, 70.0)
    img, _ = render_drone(w, cam, style, (320, 240))
    uv, _ = cam.project(np.array([[cx, cy, 20.0], [cx, cy - 5.0, 8.0]]), (320, 240))
    top, foot = (img[round(v), round(u)].astype(float) for u, v in uv)
    assert np.abs(top - roof).max() < 25, top
    south_wall = wall * style.shade(np.array([0.0, -1.0, 0.0])) * 0.92  # lit from the south
    assert np.abs(foot - south_wall).max() < 20 and np.abs(foot - roof).max() > 60, foot
    img, _ = render_drone(w, Camera(cx, cy, 90.0, 0.0, 0.0, 70.0), style, (320, 240))
    assert np.abs(img[120, 160].astype(float) - roof).max() < 25


def test_texture_path_matches_local_render(world):
    """Training renders through a pre-rendered world texture; it must agree with the
    footprint-local render (same geometry, another resolution)."""
    style = Style.random_drone(np.random.default_rng(3))
    tex = render_texture(world, style, 0.5)
    rng = np.random.default_rng(4)
    for _ in range(3):
        cam = random_camera(world, rng, (128, 128), altitude=(80, 150), margin=20.0)
        a, fa = render_drone(world, cam, style, (128, 128), texture=tex)
        b, fb = render_drone(world, cam, style, (128, 128))
        assert fa.equals(fb) and np.allclose(
            np.asarray(fa.exterior.coords)[:4], cam.footprint((128, 128))
        )
        assert _corr(_grey(a, (32, 32)), _grey(b, (32, 32))) > 0.85


def test_ortho_windows_agree(world):
    style = Style.satellite(SEED)
    full = render_ortho(world, 0.5, style, finish=False)
    x0, y0 = world.bounds[:2]
    win = render_ortho(world, 0.5, style, (x0 + 100, y0 + 150, x0 + 300, y0 + 320), finish=False)
    crop = full[1000 - 640 : 1000 - 300, 200:600]
    assert win.shape == crop.shape == (340, 400, 3)
    assert (np.abs(win.astype(int) - crop).max(axis=2) <= 2).mean() > 0.99


def test_random_cameras_stay_inside_the_world(world):
    rng = np.random.default_rng(7)
    cams = [random_camera(world, rng) for _ in range(40)]
    for cam in cams:
        assert world.box.buffer(1e-6).contains(Polygon(cam.footprint((640, 480))))
        assert 60 <= cam.altitude_m <= 200 and 0 <= cam.tilt_deg <= 35
        assert 60 <= cam.hfov_deg <= 84
    headings = np.array([c.heading_deg for c in cams])
    assert headings.min() < 90 and headings.max() > 270


# -------------------------------------------------------------------------------- the world


def _signature(w: World) -> list[bytes]:
    return [layer.encode() + shapely.to_wkb(feature_geometry(f)) for layer, f in iter_features(w)]


def test_world_is_deterministic_and_placed_in_europe():
    a, b, c = World.generate(3, 1000), World.generate(3, 1000), World.generate(4, 1000)
    assert _signature(a) == _signature(b) and a.bounds == b.bounds
    assert _signature(a) != _signature(c)
    for w in (a, c):
        lon, lat = w.centre_lonlat
        assert 3.9 < lon < 16.1 and 43.9 < lat < 54.1
        assert w.epsg == utm_epsg(lon, lat) and 32631 <= w.epsg <= 32633
        assert w.bounds[2] - w.bounds[0] == 1000 and w.bounds[0] == int(w.bounds[0])
        counts = {
            k: len(getattr(w, k)) for k in ("roads", "buildings", "fields", "trees", "rivers")
        }
        assert min(counts.values()) > 0, counts
        assert w.roundabouts and w.lakes and w.sports and w.parkings and w.cars
        assert any(b.gable for b in w.buildings) and any(not b.gable for b in w.buildings)


def test_most_100m_squares_hold_something_distinctive():
    w = World.generate(8, 1000)
    geoms = [r.line.buffer(r.width_m / 2) for r in w.roads] + [b.footprint for b in w.buildings]
    geoms += [f.polygon.exterior for f in w.fields] + [h.line for h in w.hedges]
    geoms += [lk.polygon for lk in w.lakes] + [r.line.buffer(r.width_m / 2) for r in w.rivers]
    geoms += [p.rect.polygon() for p in w.parkings] + [s.rect.polygon() for s in w.sports]
    tree = shapely.STRtree(geoms)
    x0, y0 = w.bounds[:2]
    cells = [
        box(x0 + i, y0 + j, x0 + i + 100, y0 + j + 100)
        for i in range(0, 1000, 100)
        for j in range(0, 1000, 100)
    ]
    hits = [len(tree.query(c, predicate="intersects")) > 0 for c in cells]
    assert np.mean(hits) >= 0.9


def test_variant_keeps_the_layout_and_changes_the_season_things():
    w = World.generate(2, 1200)
    v, v2 = w.variant(1), w.variant(1)
    assert _signature(v) == _signature(v2)
    assert [r.line for r in v.roads] == [r.line for r in w.roads]
    assert [b.footprint for b in v.buildings] == [b.footprint for b in w.buildings]
    assert [f.polygon for f in v.fields] == [f.polygon for f in w.fields]
    changed = np.mean(
        [(a.crop, a.tone) != (b.crop, b.tone) for a, b in zip(w.fields, v.fields, strict=True)]
    )
    assert len(w.fields) >= 20 and 0.15 <= changed <= 0.45, changed
    old = np.array([(t.x, t.y) for t in w.trees])
    new = np.array([(t.x, t.y) for t in v.trees])
    assert len(new) > 0.8 * len(old)
    moved = np.array([np.hypot(*(old - p).T).min() for p in new])
    assert np.median(moved) > 1.0  # re-placed, not the same trees
    assert [(c.x, c.y) for c in v.cars] != [(c.x, c.y) for c in w.cars]
