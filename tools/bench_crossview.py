"""Measure `locate` on the real crossview pair, as tests/test_crossview_real.py sets it up.

    .venv/bin/python tools/bench_crossview.py [--gps-off 15] [--features auto]

For each satellite year and yaw error (none, 0, +-10, +-20, +-30 deg): the refined match
nearest the tile centre (error, heading error, inliers, the description that won), whether it
is rank 1 or a conflict (and why), and the wall time of the query.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_crossview_real as X  # noqa: E402  (the test's own set-up, so the two agree)
from PIL import Image  # noqa: E402
from pyproj import Transformer  # noqa: E402

from geobridge_qgis.core import locate as L  # noqa: E402
from geobridge_qgis.core import refine  # noqa: E402
from geobridge_qgis.core.bundle import Bundle  # noqa: E402
from geobridge_qgis.core.encoders import Encoders  # noqa: E402
from geobridge_qgis.core.index import Index, build_index  # noqa: E402
from geobridge_qgis.core.photo import read_photo_with_meta  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gps-off", type=float, default=15.0, help="metres, towards the north-east")
    ap.add_argument("--features", default="auto")
    ap.add_argument("--years", default="2020,2022")
    ap.add_argument("--yaws", default="none,0,10,-10,20,-20,30,-30")
    a = ap.parse_args()
    if not X.DRONE.exists():
        sys.exit(f"{X.DRONE}: not there")
    enc = Encoders(Bundle.load(X.BUNDLE))
    drone = np.asarray(Image.open(X.DRONE).convert("RGB"))
    off = a.gps_off / math.sqrt(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-crossview-"))
    for year in (int(y) for y in a.years.split(",")):
        raster = tmp / f"sat{year}.tif"
        tx, ty = X._satellite(year, raster)
        build_index(enc, raster, tmp / f"index{year}")
        index = Index.open(tmp / f"index{year}", enc.bundle)
        matcher = refine.Matcher.for_index(index, features=a.features)
        lon, lat = Transformer.from_crs(X.EPSG, 4326, always_xy=True).transform(tx + off, ty + off)
        for y in a.yaws.split(","):
            yaw = None if y == "none" else float(y)
            photo = tmp / "dji.jpg"
            X._dji_photo(photo, drone, lon, lat, None if yaw is None else X.HEADING + yaw)
            img, meta = read_photo_with_meta(photo)
            t = time.perf_counter()
            res = L.locate_query(index, enc, img, meta, None, L.QueryOptions(top_k=5), matcher)
            wall = time.perf_counter() - t
            refined = [c for c in res.candidates if c.method == "refined"]
            line = f"{year} yaw error {y:>4}: "
            if not refined:
                reasons = [c.match.reason for c in res.candidates if c.match]
                print(line + f"no refined match ({reasons}), {wall:.1f} s", flush=True)
                continue
            c = min(refined, key=lambda c: math.hypot(c.x - tx, c.y - ty))
            err = math.hypot(c.x - tx, c.y - ty)
            dh = (c.heading_deg - X.HEADING + 180) % 360 - 180
            m = c.match
            where = "rank 1" if c is res.candidates[0] else f"rank {c.rank}"
            why = f", conflict: {c.conflict}" if c.conflict else ""
            print(line + f"{err:.2f} m, heading {dh:+.1f} deg, {m.inliers} inliers "
                  f"({m.method}), {where}{why}, {wall:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
