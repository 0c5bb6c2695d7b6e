"""Measure the refiner's matcher on synthetic drone photos of the demo world, per tilt band.

    .venv/bin/python tools/bench_matching.py --per-band 8 --meta exact --bands 0-30,30-55
    .venv/bin/python tools/bench_matching.py --meta realistic --set RATIO=0.85 --wrong

Photos are rendered from a variant of the demo world (seed 7, the demo satellite raster's) in a
random drone style, once, and cached under the system's temp folder.

`--meta exact` (and `noyaw`): the matcher gets the true camera and a candidate `--offset` 14 m
from the true centre on 150 m chips, as retrieval would give it; the photo's centre may lie
anywhere in the chip (`--radius`, default the chip's, as `rerank` matches retrieval's
candidates).

`--meta realistic`: the metadata is drawn from the engine's error model
(`synthworld.metadata_errors.MetadataErrors()`, whose sigmas are `core.posterior.SIGMAS`: GPS
5 m per axis, yaw 10 deg, gimbal pitch 1 deg, altitude above take-off 1 m barometer plus a
5 m terrain step), without GNSS jumps (tens of metres: beyond the prior's window by design,
retrieval's candidates cover them), and the photo is matched as `locate` matches the
metadata's prior (`fusion.match_prior`): around the prior's predicted view centre, the centre
anywhere within its 3-sigma reach. `--meta uniform` is the earlier set-up (yaw off by up to
+-30 deg uniformly, altitude by 5 %, tilt by 3 deg, at a retrieval candidate), for comparison.

`--wrong` also matches each photo 500 m away from its place: any acceptance there is a false
positive. Prints, per band: accepted, accepted within 5 m, median error of the accepted, ms
per candidate (wall clock, and CPU time of this process); `--verbose` a line per photo.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geobridge_qgis.core import refine  # noqa: E402
from geobridge_qgis.core.camera import Camera, centre_width_m  # noqa: E402

SAT = ROOT / "resources" / "demo" / "world" / "satellite.tif"
CACHE = Path(tempfile.gettempdir()) / "geobridge-bench-matching"
SIZE = (640, 480)


def photos(band: tuple[float, float], n: int) -> list[tuple[np.ndarray, Camera]]:
    CACHE.mkdir(exist_ok=True)
    out, world = [], None
    for i in range(n):
        f = CACHE / f"b{band[0]:g}-{band[1]:g}-{i}.npz"
        if not f.exists():
            from synthworld.render import Style, render_drone
            from synthworld.world import World

            if world is None:
                world = World.generate(7, 2000).variant(8)
            rng = np.random.default_rng([int(band[0]), int(band[1]), i])
            xmin, ymin, xmax, ymax = world.bounds
            cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
            cam = Camera(float(cx + rng.uniform(-450, 450)), float(cy + rng.uniform(-450, 450)),
                         float(rng.uniform(80, 150)), float(rng.uniform(0, 360)),
                         float(rng.uniform(*band)), float(rng.uniform(60, 75)))  # fmt: skip
            img, _ = render_drone(world, cam, Style.random_drone(rng), SIZE, rng=rng)
            np.savez_compressed(f, img=img, cam=[cam.x, cam.y, cam.altitude_m, cam.heading_deg,
                                                 cam.tilt_deg, cam.hfov_deg])  # fmt: skip
        d = np.load(f)
        out.append((d["img"], Camera(*(float(v) for v in d["cam"]))))
    return out


def metadata(cam: Camera, meta: str, rng) -> Camera:
    """The camera the matcher is given in the exact, noyaw and uniform set-ups (at (0, 0))."""
    c = replace(cam, x=0.0, y=0.0)
    if meta == "uniform":
        c = replace(c, heading_deg=(c.heading_deg + rng.uniform(-30, 30)) % 360,
                    altitude_m=c.altitude_m * rng.uniform(0.95, 1.05),
                    tilt_deg=max(0.0, c.tilt_deg + rng.uniform(-3, 3)))  # fmt: skip
    elif meta == "noyaw":
        c = replace(c, heading_deg=None)
    return c


def noisy_prior(cam: Camera, size: tuple[int, int], crs, rng):
    """(the metadata's prior, the camera it gives the matcher) under the engine's error model,
    as `locate` builds them from a file's tags (the lens known: its field of view exact)."""
    from pyproj import Transformer

    from geobridge_qgis.core import posterior
    from geobridge_qgis.core.priors import PriorOptions, tilt_deg
    from synthworld.metadata_errors import MetadataErrors, draw, noisy_meta

    noise = draw(replace(MetadataErrors(), gps_jump_rate=0.0), rng)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True).transform
    meta = noisy_meta(cam, noise, to_ll, None)
    prior = posterior.metadata_prior(meta, size, PriorOptions(), crs)
    prior.hfov_deg = cam.hfov_deg
    mc = Camera(0.0, 0.0, meta.altitude_m, meta.heading_deg, tilt_deg(meta), cam.hfov_deg)
    return prior, mc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bands", default="0-30,30-55,55-70")
    ap.add_argument("--per-band", type=int, default=8)
    ap.add_argument("--meta", default="exact", choices=["exact", "realistic", "uniform", "noyaw"])
    ap.add_argument("--features", default="sift")
    ap.add_argument("--set", action="append", default=[], help="refine.NAME=value")
    ap.add_argument("--wrong", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="a line per photo")
    ap.add_argument(
        "--radius",
        type=float,
        default=None,
        help="metres the centre may lie from a retrieval candidate (default: the chip's); "
        "realistic metadata is matched around its prior, within the prior's 3-sigma reach",
    )
    ap.add_argument("--offset", type=float, default=14.0, help="candidate's metres off the truth")
    a = ap.parse_args()
    from geobridge_qgis.core import features, fusion, learned_matcher

    for s in a.set:
        k, v = s.split("=")
        mod = {"features": features, "learned_matcher": learned_matcher}.get(k.split(".")[0])
        k = k.split(".")[-1]
        mod = mod or refine
        old = getattr(mod, k)
        setattr(mod, k, v.lower() in ("1", "true") if isinstance(old, bool) else type(old)(v))
    from pyproj import CRS

    from geobridge_qgis.core import tiling

    crs = CRS.from_wkt(tiling.open_raster(SAT).GetProjection())
    m = refine.Matcher(str(SAT), crs, features=a.features)
    print(
        f"features={a.features} meta={a.meta} radius={a.radius} offset={a.offset} {' '.join(a.set)}"
    )
    shift = np.array([400.0, -300.0])  # the wrong place: 500 m off
    for band in a.bands.split(","):
        lo, hi = (float(v) for v in band.split("-"))
        rng = np.random.default_rng(5)
        ok = near = wrong = 0
        errs, wall, cpu, n = [], 0.0, 0.0, 0
        for i, (img, cam) in enumerate(photos((lo, hi), a.per_band)):
            truth = np.array(cam.centre_ground())
            if a.meta == "realistic":
                prior, mc = noisy_prior(cam, (img.shape[1], img.shape[0]), crs, rng)

                def run(dx: float, dy: float, prior=prior):
                    p = replace(prior, x=prior.x + dx, y=prior.y + dy)
                    return fusion.match_prior(m, p, None, 150.0)
            else:
                mc = metadata(cam, a.meta, rng)
                ang = rng.uniform(0, 2 * math.pi)
                cand = truth + a.offset * np.array([math.cos(ang), math.sin(ang)])
                fp = centre_width_m(mc.altitude_m, mc.tilt_deg, mc.hfov_deg)

                def run(dx: float, dy: float, cand=cand, fp=fp):
                    return m.match(cand[0] + dx, cand[1] + dy, 150.0, fp, radius_m=a.radius)

            m.set_photo(img, mc)
            t, c = time.perf_counter(), time.process_time()
            r = run(0.0, 0.0)
            wall += time.perf_counter() - t
            cpu += time.process_time() - c
            n += 1
            e = math.hypot(r.x - truth[0], r.y - truth[1]) if r.ok else math.nan
            if r.ok:
                ok += 1
                errs.append(e)
                near += e < 5.0
            r2 = None
            if a.wrong:
                t, c = time.perf_counter(), time.process_time()
                r2 = run(*shift)
                wall += time.perf_counter() - t
                cpu += time.process_time() - c
                n += 1
                wrong += r2.ok
            if a.verbose:
                w = f" WRONG accepted ({r2.inliers} inliers)" if r2 is not None and r2.ok else ""
                print(f"  {band} #{i}: alt {cam.altitude_m:.0f} m tilt {cam.tilt_deg:.0f} "
                      f"hfov {cam.hfov_deg:.0f}: {'ok' if r.ok else 'no'} error {e:.1f} m, "
                      f"{r.inliers} inliers of {r.matches}, {r.method} {r.reason}{w}",
                      flush=True)  # fmt: skip
        k = a.per_band
        med = f"{np.median(errs):.2f}" if errs else "-"
        extra = f"  false accepts {wrong}/{k}" if a.wrong else ""
        extra += f"  accepted > 10 m off {sum(e > 10 for e in errs)}"
        print(f"tilt {band:>6}: accepted {ok}/{k}, within 5 m {near}/{k} ({near / k:.0%}), "
              f"median error {med} m, {1000 * wall / n:.0f} ms wall, "
              f"{1000 * cpu / n:.0f} ms CPU per candidate{extra}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
