"""`make demo`: the main job on the bundled demo model and world, headless.

Indexes the demo world's satellite raster, locates its drone photos three ways (retrieval alone
with rotation test-time augmentation; retrieval of the photo as taken; and the default pipeline:
the photo's EXIF/XMP priors, geometric re-ranking and refinement), one photo fused with its
description and one description alone, writes out/demo/results.gpkg and out/demo/map.png
(drawn by QGIS's own map renderer) and prints a table: query, distance of the top-1 candidate
to the truth, rank of the first candidate within 50 m of the truth, and how the top-1 was found.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geobridge_qgis.core import service  # noqa: E402
from geobridge_qgis.core.errors import UserError  # noqa: E402
from geobridge_qgis.core.geodesy import haversine_m  # noqa: E402
from geobridge_qgis.core.locate import QueryOptions  # noqa: E402
from geobridge_qgis.core.photo import read_photo_with_meta  # noqa: E402
from geobridge_qgis.core.priors import NO_PRIORS  # noqa: E402
from synthworld.files import read_world  # noqa: E402

NEAR_M = 50.0


def progress(done: int, total: int, rate: float) -> None:
    if done == total or done % 512 < 256:
        print(f"\r  index: {done:,}/{total:,} chips, {rate:.0f} chips/s", end="", flush=True)
    if done == total:
        print()


def run(bundle_dir: Path, world_dir: Path, out: Path, photos: int, level_photos: int = 12) -> int:
    out.mkdir(parents=True, exist_ok=True)
    world = read_world(world_dir)
    index_dir = out / "index"
    try:
        session = service.LocateSession(bundle_dir, index_dir, log=lambda s: print(f"  {s}"))
    except UserError:
        shutil.rmtree(index_dir, ignore_errors=True)
        shutil.rmtree(index_dir.with_name("index.partial"), ignore_errors=True)
        request = service.IndexRequest(bundle_dir, str(world_dir / "satellite.tif"), index_dir)
        built = service.build_index(request, progress, log=lambda s: print(f"  {s}"))
        print(f"  indexed in {built.seconds:.0f} s")
        session = service.LocateSession(bundle_dir, index_dir, log=lambda s: print(f"  {s}"))
    print(f"model {session.bundle.name} ({session.bundle.model_id}), encoders on "
          f"{session.encoders.device}")  # fmt: skip

    rows = []
    n = min(photos, len(world.files))
    retrieval = QueryOptions(heatmap=True, rerank=False, priors=NO_PRIORS)
    modes = {
        "rot-TTA": retrieval,
        "as taken": QueryOptions(rotations=(0,), heatmap=True, rerank=False, priors=NO_PRIORS),
        "full": QueryOptions(heatmap=True),  # the defaults: priors, re-ranking, refinement
    }

    def query(label, path, text, img, meta, text_emb, options, lon, lat):
        q = session.query(options, path, img, meta, text, text_emb, sha256=False)
        d = [float(haversine_m(c.lon, c.lat, lon, lat)) for c in q.candidates]
        near = next((c.rank for c, e in zip(q.candidates, d, strict=True) if e <= NEAR_M), None)
        how = q.candidates[0].method if q.candidates else "-"
        rows.append((q.query_id, label, d[0] if d else float("nan"), near, how))
        return q.query_id

    query_of_photo: dict[int, int] = {}
    text_emb = session.embed_text(world.texts[0])
    for i in range(n):
        path = world.root / "drone" / world.files[i]
        img, meta = read_photo_with_meta(path)
        lon, lat = world.lon[i], world.lat[i]
        for mode, options in modes.items():
            qid = query(f"{path.name} {mode}", path, None, img, meta, None, options, lon, lat)
            if mode == "full":
                query_of_photo[i] = qid
        if i == 0 and text_emb is not None:
            query(f"{path.name} + description", path, world.texts[0], img, None,
                  text_emb, retrieval, lon, lat)  # fmt: skip
    if text_emb is not None:
        query("description of " + world.files[0], None, world.texts[0], None, None,
              text_emb, retrieval, world.lon[0], world.lat[0])  # fmt: skip

    gpkg = session.write(out / "results.gpkg")
    head = f"{'#':>3}  {'query':<34} {'top-1 error':>12}  rank within {NEAR_M:.0f} m  top-1 by"
    print("\n" + head)
    for qid, label, err, near, how in rows:
        print(f"{qid:>3}  {label:<34} {err:>10.0f} m  {near if near else '-':>17}  {how}")
    for k in modes:
        e = np.array([r[2] for r in rows if r[1].endswith(k)])
        if len(e):
            print(f"{k:>9}: top-1 within {NEAR_M:.0f} m for {np.mean(e <= NEAR_M):.0%} of "
                  f"{len(e)} photos, within 10 m for {np.mean(e <= 10):.0%}, median error "
                  f"{np.median(e):.0f} m")  # fmt: skip
    print(f"wrote {gpkg}")
    if level_photos:
        from geolab.levels import level_table, run_session

        print(f"\nper metadata level (first {level_photos} photos, metadata re-noised with the "
              "error model of synthworld/metadata_errors.py):")  # fmt: skip
        runs = run_session(session, world_dir, photos=level_photos, yaw_errors=(),
                           previous=False, log=lambda s: None)  # fmt: skip
        print(level_table(runs))
    from tools.mapimage import render_map

    # The matcher's GDAL dataset must be gone before QGIS shuts GDAL down (exitQgis), or its
    # late release crashes the interpreter on exit.
    session.close()
    gc.collect()

    png = render_map(world_dir, gpkg, out / "map.png", query_of_photo)
    print(f"wrote {png}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", type=Path, default=ROOT / "resources/demo/bundle")
    ap.add_argument("--world", type=Path, default=ROOT / "resources/demo/world")
    ap.add_argument("--out", type=Path, default=ROOT / "out/demo")
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--level-photos", type=int, default=12,
                    help="photos in the per-metadata-level table (0: none)")  # fmt: skip
    args = ap.parse_args()
    try:
        return run(args.bundle, args.world, args.out, args.photos, args.level_photos)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
