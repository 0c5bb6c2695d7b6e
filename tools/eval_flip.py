"""What flip test-time augmentation buys: the demo evaluation with and without it.

    python tools/eval_flip.py [--out out/bench/flip]

Indexes the demo evaluation world (resources/demo/world, held out from training) with the demo
bundle twice, with flip augmentation (the default) and with `flip=False`, and locates each of
its drone photos through the service (`LocateSession`) with retrieval-only options: four
rotations, no priors, no re-ranking. A query of the no-flip index skips the flip too, as the
engine does. Per index: R@1 and R@5 (a candidate counts when one of its chips contains the
photo's true centre), top-1 within 50 m, the median top-1 error, and the build time. Writes
result.json; `tools/bench_engine.py --only flip` copies it into the engine's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def evaluate(out: Path) -> dict:
    from model_export.evaluate import read_world
    from model_export.metrics import haversine_m
    from pyproj import Transformer

    from geobridge_qgis.core import service
    from geobridge_qgis.core.locate import QueryOptions
    from geobridge_qgis.core.photo import read_photo
    from geobridge_qgis.core.priors import NO_PRIORS

    world_dir = ROOT / "resources/demo/world"
    bundle = ROOT / "resources/demo/bundle"
    world = read_world(world_dir)
    photos = [read_photo(world_dir / "drone" / f) for f in world.files]
    options = QueryOptions(top_k=5, rerank=False, heatmap=False, priors=NO_PRIORS)
    res: dict = {"photos": len(photos), "options": "retrieval only: 4 rotations, no priors, "
                 "no re-ranking, top 5"}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for flip in (True, False):
        folder = out / f"index-flip-{'on' if flip else 'off'}"
        build_s = None
        if not folder.exists():
            t0 = time.perf_counter()
            request = service.IndexRequest(bundle, str(world_dir / "satellite.tif"), folder,
                                           flip=flip)  # fmt: skip
            service.build_index(request)
            build_s = round(time.perf_counter() - t0, 1)
        session = service.LocateSession(bundle, folder)
        index = session.index
        to_grid = Transformer.from_crs(4326, index.crs, always_xy=True)
        tx, ty = (np.asarray(v) for v in to_grid.transform(world.lon, world.lat))
        half = index.sizes / 2
        ranks, errors = [], []
        t0 = time.perf_counter()
        for i, img in enumerate(photos):
            q = session.query(options, image=img, meta=None)
            inside = (np.abs(index.cx - tx[i]) <= half) & (np.abs(index.cy - ty[i]) <= half)
            positive = set(index.ids[inside].tolist())
            hit = [c.rank for c in q.candidates if positive & set(c.chip_ids)]
            ranks.append(min(hit) if hit else np.inf)
            top = q.candidates[0]
            errors.append(float(haversine_m(top.lon, top.lat, world.lon[i], world.lat[i])))
        query_s = (time.perf_counter() - t0) / len(photos)
        session.close()
        ranks, errors = np.array(ranks), np.array(errors)
        res[f"flip_{'on' if flip else 'off'}"] = {
            "index_flip_tta": index.manifest["flip_tta"],
            "chips": int(index.manifest["count"]),
            "R@1": round(float(np.mean(ranks <= 1) * 100), 1),
            "R@5": round(float(np.mean(ranks <= 5) * 100), 1),
            "top1_within_50m": round(float(np.mean(errors <= 50) * 100), 1),
            "median_error_m": round(float(np.median(errors)), 1),
            "build_s": build_s,
            "s_per_query": round(query_s, 3),
        }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench/flip")
    args = ap.parse_args()
    res = evaluate(args.out)
    (args.out / "result.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
