"""`make demo`: the main job on the bundled demo model and world, headless.

Indexes the demo world's satellite raster, locates its drone photos (with and without rotation
test-time augmentation), one photo fused with its description and one description alone, writes
out/demo/results.gpkg and out/demo/map.png (drawn by QGIS's own map renderer) and prints a
table: query, distance of the top-1 candidate to the truth, rank of the first candidate within
50 m of the truth.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geobridge_qgis.core import locate as L  # noqa: E402
from geobridge_qgis.core.bundle import Bundle  # noqa: E402
from geobridge_qgis.core.encoders import Encoders  # noqa: E402
from geobridge_qgis.core.errors import UserError  # noqa: E402
from geobridge_qgis.core.index import Index, build_index  # noqa: E402
from geobridge_qgis.core.photo import read_photo  # noqa: E402
from geobridge_qgis.core.results import QueryRecord, write_results  # noqa: E402
from model_export.evaluate import read_world  # noqa: E402
from model_export.metrics import haversine_m  # noqa: E402

NEAR_M = 50.0


def progress(done: int, total: int, rate: float) -> None:
    if done == total or done % 512 < 256:
        print(f"\r  index: {done:,}/{total:,} chips, {rate:.0f} chips/s", end="", flush=True)
    if done == total:
        print()


def run(bundle_dir: Path, world_dir: Path, out: Path, photos: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(bundle_dir)
    encoders = Encoders(bundle)
    world = read_world(world_dir)
    print(f"model {bundle.name} ({bundle.model_id}), encoders on {encoders.device}")
    index_dir = out / "index"
    try:
        index = Index.open(index_dir, bundle)
    except UserError:
        shutil.rmtree(index_dir, ignore_errors=True)
        shutil.rmtree(index_dir.with_name("index.partial"), ignore_errors=True)
        t0 = time.perf_counter()
        build_index(encoders, world_dir / "satellite.tif", index_dir, progress=progress,
                    on_estimate=lambda e: print(f"  plan: {e.line()}"))  # fmt: skip
        print(f"  indexed in {time.perf_counter() - t0:.0f} s")
        index = Index.open(index_dir, bundle)

    items, rows = [], []
    n = min(photos, len(world.files))

    def query(label, kind, path, text, emb, rotations, lon, lat):
        t0 = time.perf_counter()
        res = L.locate(index, emb, bundle.logit_scale, top_k=10, rotations=rotations)
        qid = len(items) + 1
        rec = QueryRecord(
            query_id=qid, kind=kind, model_id=bundle.model_id, index_id=index.index_id,
            file=str(path) if path else None, text=text, device=encoders.device,
            seconds=time.perf_counter() - t0, parameters={"rotations": list(rotations)},
        )  # fmt: skip
        items.append((rec, res, index.crs))
        d = [float(haversine_m(c.lon, c.lat, lon, lat)) for c in res.candidates]
        near = next((c.rank for c, e in zip(res.candidates, d, strict=True) if e <= NEAR_M), None)
        rows.append((qid, label, d[0] if d else float("nan"), near))
        return qid

    query_of_photo: dict[int, int] = {}
    text_emb = encoders.encode_text([world.texts[0]]) if world.texts[0] else None
    for i in range(n):
        path = world.root / "drone" / world.files[i]
        img = read_photo(path)
        rot = L.photo_embeddings(encoders, img, "drone", L.DEFAULT_ROTATIONS)
        lon, lat = world.lon[i], world.lat[i]
        query_of_photo[i] = query(
            f"{path.name} rot-TTA", "photo", path, None, rot, L.DEFAULT_ROTATIONS, lon, lat
        )
        query(f"{path.name} as taken", "photo", path, None, rot[:1], (0,), lon, lat)
        if i == 0 and text_emb is not None:
            fused = L.fuse(rot, text_emb, 0.5)
            query(f"{path.name} + description", "photo+text", path, world.texts[0], fused,
                  L.DEFAULT_ROTATIONS, lon, lat)  # fmt: skip
    if text_emb is not None:
        query("description of " + world.files[0], "text", None, world.texts[0],
              L.fuse(None, text_emb), (0,), world.lon[0], world.lat[0])  # fmt: skip

    gpkg = write_results(out / "results.gpkg", items)
    print(f"\n{'#':>3}  {'query':<34} {'top-1 error':>12}  rank within {NEAR_M:.0f} m")
    for qid, label, err, near in rows:
        print(f"{qid:>3}  {label:<34} {err:>10.0f} m  {near if near else '-'}")
    errs = {k: np.array([r[2] for r in rows if r[1].endswith(k)]) for k in ("rot-TTA", "as taken")}
    for k, e in errs.items():
        if len(e):
            print(f"{k:>9}: top-1 within {NEAR_M:.0f} m for {np.mean(e <= NEAR_M):.0%} of "
                  f"{len(e)} photos, median error {np.median(e):.0f} m")  # fmt: skip
    print(f"wrote {gpkg}")
    from tools.mapimage import render_map

    png = render_map(world_dir, gpkg, out / "map.png", query_of_photo)
    print(f"wrote {png}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", type=Path, default=ROOT / "resources/demo/bundle")
    ap.add_argument("--world", type=Path, default=ROOT / "resources/demo/world")
    ap.add_argument("--out", type=Path, default=ROOT / "out/demo")
    ap.add_argument("--photos", type=int, default=40)
    args = ap.parse_args()
    try:
        return run(args.bundle, args.world, args.out, args.photos)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
