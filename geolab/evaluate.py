"""`python -m geolab eval`: the paper's metrics on a synthetic world, through the engine.

The gallery is the engine's own multi-scale chip grid over the world's whole satellite raster
(100 m and 150 m chips, 50 % overlap, exactly what the plugin indexes), so this measures the
engine as analysts use it. Positive rule: a satellite chip is a positive for a drone photo (or
its description) when the chip's square contains the photo's true footprint centre; with two
scales and 50 % overlap, several chips can be positive and the best-ranked one counts.
For satellite -> drone the query is, per photo, the 100 m chip whose centre is nearest the
photo's true centre, and the positive is that photo.

Drone queries are embedded in four rotations; a gallery chip's score is the maximum over them
("rot-TTA"); "no-rot" uses the photo as taken. Baselines on the same gallery: random scores,
and a colour histogram (8x8x8 RGB bins, cosine) for the image-image directions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from pyproj import Transformer

from geobridge_qgis.core import service, tiling
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.encoders import Encoders, normalize
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.geodesy import haversine_m
from geobridge_qgis.core.index import Index
from geobridge_qgis.core.locate import (
    DEFAULT_ROTATIONS,
    QueryOptions,
    locate,
    photo_embeddings,
)
from geobridge_qgis.core.photo import read_photo, read_photo_with_meta
from geobridge_qgis.core.priors import NO_PRIORS, PriorOptions, priors_for
from synthworld.files import read_world

from .metrics import (
    TILT_BANDS,
    first_positive_ranks,
    localisation_metrics,
    mean_average_precision,
    retrieval_metrics,
)

TOPK_CSV = 10


def gallery_index(bundle: Bundle, world: Path, cache: Path) -> Index:
    """The world's reference index, built once per model into `cache` (through the service,
    as every front end builds one)."""
    out = cache / f"index-{bundle.model_id}"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        service.build_index(service.IndexRequest(bundle.root, str(world / "satellite.tif"), out))
    return Index.open(out, bundle)


def colour_histogram(images: list[np.ndarray], bins: int = 8) -> np.ndarray:
    out = np.zeros((len(images), bins**3), np.float32)
    for i, img in enumerate(images):
        q = (img.reshape(-1, 3).astype(np.int64) * bins) // 256
        idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        out[i] = np.bincount(idx, minlength=bins**3)
    return normalize(np.sqrt(out))


def _row(name: str, method: str, ranks, gallery_size, errors, scores=None, positives=None) -> dict:
    row = {
        "direction": name,
        "method": method,
        **retrieval_metrics(ranks, gallery_size),
        **localisation_metrics(errors),
    }
    row["mAP"] = float("nan") if scores is None else mean_average_precision(scores, positives)
    return row


def _write_topk(path: Path, scores: np.ndarray, positives: np.ndarray, gallery_ids) -> None:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOPK_CSV]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query_id", "rank", "gallery_id", "score", "correct"])
        for q in range(len(scores)):
            for r, g in enumerate(order[q], start=1):
                w.writerow([q, r, gallery_ids[g], f"{scores[q, g]:.6f}", int(positives[q, g])])


def evaluate(bundle_dir: Path, world_dir: Path, out: Path, seed: int = 0) -> list[dict]:
    bundle = Bundle.load(bundle_dir)
    encoders = Encoders(bundle)
    world = read_world(world_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = gallery_index(bundle, world.root, out / "cache")
    ids = index.ids
    gallery = np.stack([index.faiss_index.reconstruct(int(i)) for i in ids])
    to_grid = Transformer.from_crs(4326, index.crs, always_xy=True)
    tx, ty = to_grid.transform(world.lon, world.lat)
    tx, ty = np.asarray(tx), np.asarray(ty)
    half = index.sizes[None, :] / 2
    positives = (np.abs(index.cx[None, :] - tx[:, None]) <= half) & (
        np.abs(index.cy[None, :] - ty[:, None]) <= half
    )

    photos = [read_photo(world.root / "drone" / f) for f in world.files]
    drone_rot = np.stack(
        [photo_embeddings(encoders, p, "drone", DEFAULT_ROTATIONS) for p in photos]
    )
    drone_up = drone_rot[:, 0]
    rows = []

    def chip_errors(scores, sel=slice(None)):
        top = scores.argmax(1)
        return haversine_m(index.lon[top], index.lat[top], world.lon[sel], world.lat[sel])

    # drone -> satellite
    for method, s in (
        ("rot-TTA", np.einsum("qrd,gd->qrg", drone_rot, gallery).max(1)),
        ("no-rot", drone_up @ gallery.T),
    ):
        rows.append(_row("drone->satellite", method, first_positive_ranks(s, positives),
                         len(ids), chip_errors(s), scores=s, positives=positives))  # fmt: skip
        if method == "rot-TTA":
            _write_topk(out / "topk_drone_satellite.csv", s, positives, ids)
            engine_err = []
            for q in range(len(photos)):
                c = locate(index, drone_rot[q], bundle.logit_scale, top_k=1, heatmap=False)
                best = c.candidates[0]
                engine_err.append(haversine_m(best.lon, best.lat, world.lon[q], world.lat[q]))
            ranks = first_positive_ranks(s, positives)
            rows.append(_row("drone->satellite", "rot-TTA, engine candidate", ranks, len(ids),
                             np.array(engine_err), scores=s, positives=positives))  # fmt: skip
            band_rows = []
            for lo, hi in TILT_BANDS:
                sel = (world.tilt_deg >= lo) & (world.tilt_deg < hi)
                if sel.any():
                    band_rows.append(_row(
                        "drone->satellite", f"rot-TTA, {lo:g}-{int(hi)} deg off nadir "
                        f"(n={int(sel.sum())})", ranks[sel], len(ids), chip_errors(s[sel], sel),
                        scores=s[sel], positives=positives[sel]))  # fmt: skip
            if len(band_rows) > 1:  # one band: the same as the whole
                rows += band_rows
    rng = np.random.default_rng(seed)
    rnd = rng.random(positives.shape)
    rows.append(_row("drone->satellite", "random", first_positive_ranks(rnd, positives),
                     len(ids), chip_errors(rnd), scores=rnd, positives=positives))  # fmt: skip
    reader = tiling.ChipReader(
        tiling.open_raster(world.root / "satellite.tif"), index.crs, (-1e12, -1e12, 1e12, 1e12)
    )
    chips = [reader.read(index.cx[i], index.cy[i], index.sizes[i], 64) for i in range(len(ids))]
    chips = [c if c is not None else np.zeros((64, 64, 3), np.uint8) for c in chips]
    hist_g, hist_q = colour_histogram(chips), colour_histogram(photos)
    hs = hist_q @ hist_g.T
    rows.append(_row("drone->satellite", "colour histogram", first_positive_ranks(hs, positives),
                     len(ids), chip_errors(hs), scores=hs, positives=positives))  # fmt: skip

    # satellite -> drone: the 100 m chip nearest each photo's centre is the query
    small = np.flatnonzero(index.sizes == index.sizes.min())
    d = (index.cx[small][None] - tx[:, None]) ** 2 + (index.cy[small][None] - ty[:, None]) ** 2
    qchips = small[d.argmin(1)]
    eye = np.eye(len(photos), dtype=bool)
    s = np.einsum("qd,grd->qgr", gallery[qchips], drone_rot).max(2)
    top = s.argmax(1)
    err = haversine_m(world.lon[top], world.lat[top], world.lon, world.lat)
    rows.append(
        _row(
            "satellite->drone",
            "rot-TTA",
            first_positive_ranks(s, eye),
            len(photos),
            err,
            scores=s,
            positives=eye,
        )
    )
    _write_topk(out / "topk_satellite_drone.csv", s, eye, world.files)
    hs2 = hist_g[qchips] @ hist_q.T
    top = hs2.argmax(1)
    err = haversine_m(world.lon[top], world.lat[top], world.lon, world.lat)
    rows.append(_row("satellite->drone", "colour histogram", first_positive_ranks(hs2, eye),
                     len(photos), err, scores=hs2, positives=eye))  # fmt: skip

    # text -> satellite and text -> drone
    if all(world.texts) and "text" in bundle.towers:
        text = encoders.encode_text(world.texts)
        s = text @ gallery.T
        rows.append(_row("text->satellite", "model", first_positive_ranks(s, positives),
                         len(ids), chip_errors(s), scores=s, positives=positives))  # fmt: skip
        _write_topk(out / "topk_text_satellite.csv", s, positives, ids)
        rnd = rng.random(positives.shape)
        rows.append(_row("text->satellite", "random", first_positive_ranks(rnd, positives),
                         len(ids), chip_errors(rnd), scores=rnd, positives=positives))  # fmt: skip
        s = np.einsum("qd,grd->qgr", text, drone_rot).max(2)
        top = s.argmax(1)
        err = haversine_m(world.lon[top], world.lat[top], world.lon, world.lat)
        rows.append(
            _row(
                "text->drone",
                "model",
                first_positive_ranks(s, eye),
                len(photos),
                err,
                scores=s,
                positives=eye,
            )
        )
        _write_topk(out / "topk_text_drone.csv", s, eye, world.files)
    (out / "metrics.json").write_text(json.dumps(rows, indent=1))
    return rows


def table(rows: list[dict]) -> str:
    cols = ["R@1", "R@5", "R@1%", "MRR", "mAP", "L@50", "L@100", "L@150", "median_m"]
    names = {"MRR": "MRR (official 'AP')", "mAP": "mAP (all positives)"}
    lines = ["| direction | method | " + " | ".join(names.get(c, c) for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]  # fmt: skip
    for r in rows:
        vals = ["–" if r[c] != r[c] else f"{r[c]:.1f}" for c in cols]
        lines.append(f"| {r['direction']} | {r['method']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------- re-ranking and refinement

REFINE_RADII = (10, 25, 50, 100)
PRIOR_VARIANTS = {
    "+ GPS prior": PriorOptions(gps=True, altitude=False, heading=False),
    "+ altitude prior": PriorOptions(gps=False, altitude=True, heading=False),
    "+ heading prior": PriorOptions(gps=False, altitude=False, heading=True),
    "+ all priors": PriorOptions(),
}


def _loc_row(step: str, errors, seconds: float, extra: dict | None = None) -> dict:
    errors = np.asarray(errors, float)
    row = {"step": step, **localisation_metrics(errors, REFINE_RADII)}
    row["s_per_query"] = seconds
    row.update(extra or {})
    return row


def evaluate_refinement(
    bundle_dir: Path, world_dir: Path, out: Path, priors: bool = True, log=print
) -> list[dict]:
    """L@10/25/50/100 and the median error of the top-1 location, per step of the pipeline:
    retrieval alone, after geometric re-ranking (the re-ranked top-1's retrieval location),
    after refinement (its refined centre); then the metadata alone (the view centre the priors
    predict, no imagery), all priors with retrieval alone, and, re-ranked and refined, each
    prior and all of them.
    `s_per_query` is the time the step adds per query (embedding and search for retrieval)."""
    bundle = Bundle.load(bundle_dir)
    world = read_world(world_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = gallery_index(bundle, world.root, out / "cache")
    why: list[str] = []
    session = service.LocateSession(bundle, index, log=why.append)
    if session.matcher is None:
        raise UserError(why[0] if why else f"{world_dir}: re-ranking cannot read the raster")
    photos = [read_photo_with_meta(world.root / "drone" / f) for f in world.files]

    def run(options: QueryOptions):
        return [session.query(options, image=img, meta=meta, sha256=False).result
                for img, meta in photos]  # fmt: skip

    def err(lonlat, q):
        return float(haversine_m(lonlat[0], lonlat[1], world.lon[q], world.lat[q]))

    def mean_time(results, *keys):
        return float(np.mean([sum(r.timings.get(k, 0.0) for k in keys) for r in results]))

    def refined_stats(results, errors) -> dict:
        """Share of queries whose top-1 was refined, and those queries' median error."""
        e = [errors[q] for q, r in enumerate(results) if r.candidates[0].method == "refined"]
        return {"top1_refined_pct": 100 * len(e) / len(results),
                "median_m_refined_top1": float(np.median(e)) if e else float("nan")}  # fmt: skip

    base = QueryOptions(top_k=10, heatmap=False, priors=NO_PRIORS)
    log("retrieval, re-ranking and refinement without priors")
    res = run(base)
    retrieval, reranked, refined = [], [], []
    for q, r in enumerate(res):
        first = min(r.candidates, key=lambda c: c.retrieval_rank)
        retrieval.append(err(first.retrieval_lonlat, q))
        top = r.candidates[0]
        reranked.append(err(top.retrieval_lonlat, q))
        refined.append(err((top.lon, top.lat), q))
    accepted = [sum(c.match is not None and c.match.ok for c in r.candidates) for r in res]
    rows = [
        _loc_row("retrieval", retrieval, mean_time(res, "embed", "search")),
        _loc_row(
            "+ re-ranking",
            reranked,
            mean_time(res, "rerank"),
            {"accepted_per_query": float(np.mean(accepted))},
        ),
        _loc_row("+ refinement", refined, 0.0, refined_stats(res, refined)),
    ]
    if priors:
        # The metadata on its own, no imagery: the view centre the priors predict.
        centres = []
        for q, (img, meta) in enumerate(photos):
            p = priors_for(meta, (img.shape[1], img.shape[0]), PriorOptions())
            centres.append(err(p.centre_lonlat, q) if p.centre_lonlat else float("inf"))
        rows.append(_loc_row("metadata alone (predicted view centre)", centres, 0.0))
        log("all priors, retrieval alone")
        res = run(QueryOptions(top_k=10, heatmap=False, rerank=False))
        e = [err((r.candidates[0].lon, r.candidates[0].lat), q) for q, r in enumerate(res)]
        rows.append(_loc_row("all priors, retrieval alone", e, mean_time(res, "embed", "search")))
        for name, prior in PRIOR_VARIANTS.items():
            log(name)
            res = run(QueryOptions(top_k=10, heatmap=False, priors=prior))
            e = [err((r.candidates[0].lon, r.candidates[0].lat), q) for q, r in enumerate(res)]
            used = sorted({u for r in res for u in r.priors_used})
            rows.append(_loc_row(name, e, mean_time(res, "embed", "search", "rerank"),
                                 {"priors_used": used, **refined_stats(res, e)}))  # fmt: skip
    (out / "refinement.json").write_text(json.dumps(rows, indent=1))
    return rows


def refinement_table(rows: list[dict]) -> str:
    cols = [f"L@{r}" for r in REFINE_RADII] + ["median_m"]
    extra = ["top-1 refined %", "median m, refined top-1", "s/query"]
    lines = ["| step | " + " | ".join(cols + extra) + " |",
             "|---|" + "---|" * (len(cols) + len(extra))]  # fmt: skip

    def fmt(v, spec):
        return "–" if v is None or v != v else format(v, spec)

    for r in rows:
        vals = [f"{r[c]:.1f}" for c in cols] + [
            fmt(r.get("top1_refined_pct"), ".1f"),
            fmt(r.get("median_m_refined_top1"), ".1f"),
            f"{r['s_per_query']:.2f}",
        ]
        lines.append(f"| {r['step']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
