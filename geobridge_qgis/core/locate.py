"""Query embedding -> index search -> candidate places (and a heat map).

Queries. A drone photo is embedded in several rotations (0/90/180/270 degrees by default: a
drone's heading is unknown and the satellite gallery is north-up). Each rotation is searched and
a chip's score is the **maximum** over rotations (the rotation that lines the photo up with the
chip), not the mean: averaging embeddings of rotated views blurs exactly the layout the match
needs. A description alone is one embedding. A photo *and* a description are fused per rotation:
normalise(w_photo * photo + w_text * text), the paper's semantic anchor in the analyst's hands.

Candidates. The top chips over all scales are merged: a chip joins the best-scoring candidate
whose seed chip overlaps it (intersection over the smaller chip's area >= MERGE_OVERLAP), else
it seeds a new one. A candidate's score pools its chips: log(sum(exp(logit_scale * cosine))) /
logit_scale, so that softmax(logit_scale * score) over the candidates, its probability, is the
share of the retrieval softmax's mass that falls in it, and candidates are ranked by it: a place
that several overlapping chips and scales support outranks one lone chip of the same cosine
(measured on held-out worlds: more top-1s within 50 and 100 m than ranking by the best chip).
Its location is the centroid of its chips weighted by softmax(logit_scale * cosine) within it
(the model's own temperature); its footprint is the seed chip's square; `cosine` keeps the seed
chip's cosine.

After geometric re-ranking (core.refine) a candidate's `score` is the rank score that ordered
it (its retrieval score stays in `retrieval_score`, its best chip's cosine in `cosine`), the
probability is recomputed from that score, and
refined candidates that landed on the same spot are merged into one (`merge_same_spot`): the
table's score, the probability and the rank then always agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from pyproj import Transformer

from . import defaults, fusion, tiling
from .consistency import ring_area
from .encoders import Encoders, normalize
from .index import Index
from .match import Match
from .photo import PhotoMeta
from .posterior import MetadataPrior, metadata_prior
from .priors import PriorOptions, priors_for
from .refine import Matcher, RasterUnavailable, rerank

MERGE_OVERLAP = 0.25
# Refined centres closer than this many (combined) standard deviations, than MERGE_MIN_M
# (a few metres: one photo cannot be in two places that close), or than MERGE_FOOTPRINT of the
# smaller footprint's width (footprints that overlap that much show the same ground; the
# bootstrap's sigma leaves out terrain relief and the camera model's error), are one place.
MERGE_SIGMAS = 2.0
MERGE_MIN_M = 5.0
MERGE_FOOTPRINT = 0.1
DEFAULT_ROTATIONS = defaults.ROTATIONS


def photo_embeddings(
    encoders: Encoders,
    image: np.ndarray,
    view: str = "drone",
    rotations: tuple[int, ...] = DEFAULT_ROTATIONS,
    flip: bool = True,
) -> np.ndarray:
    """[R, D]: the photo in each rotation (degrees counter-clockwise); `flip=False` for an
    index built without flip augmentation."""
    from .transform import rotations as rotate

    return encoders.encode_images(view, rotate(image, rotations or (0,)), flip)


def fuse(photo: np.ndarray | None, text: np.ndarray | None, text_weight: float = 0.5) -> np.ndarray:
    """[R, D] query embeddings from photo rotations [R, D] and/or one text embedding [1, D]."""
    if photo is None and text is None:
        raise ValueError("a query needs a photo, a text or both")
    if photo is None:
        return normalize(text)
    if text is None:
        return normalize(photo)
    return normalize((1 - text_weight) * photo + text_weight * text)


@dataclass
class Candidate:
    rank: int
    score: float  # what ordered the candidates: the rank score once re-ranked, else pooled
    probability: float
    x: float  # in the index's grid CRS
    y: float
    lon: float
    lat: float
    size_m: float
    footprint: list[tuple[float, float]]  # seed chip square, grid CRS
    chip_ids: list[int]
    chip_scores: list[float]
    rotation: int  # the query rotation that matched the seed chip best
    # Set by re-ranking (core.refine): "retrieval" when no geometric step touched it.
    method: str = "retrieval"
    retrieval_rank: int = 0
    rank_score: float | None = None  # core.refine.rerank's; None: not re-ranked
    match: Match | None = None
    heading_deg: float | None = None  # refined: clockwise from north
    heading_sigma_deg: float | None = None
    centre_sigma_m: float | None = None
    retrieval_lonlat: tuple[float, float] | None = None  # before refinement moved it
    # Set by the posterior step (core.fusion): why an accepted match disagrees with the
    # photo's metadata (None: it agrees, or there is no metadata), what the candidate rests on,
    # and its share of the retrieval softmax (a calibration feature).
    conflict: str | None = None
    evidence: str = ""
    retrieval_probability: float = 0.0
    cosine: float | None = None  # the seed chip's retrieval cosine (default: `score`)
    retrieval_score: float | None = None  # the pooled score that ranked it (default: `score`)
    merged_ranks: list[int] = field(default_factory=list)  # all retrieval ranks it stands for

    def __post_init__(self) -> None:
        if self.cosine is None:
            self.cosine = self.score
        if self.retrieval_score is None:
            self.retrieval_score = self.score

    def as_dict(self, crs=None) -> dict:
        """JSON-ready; with the index's `crs`, the footprint as WGS84 WKT (else grid CRS)."""
        d = {
            "rank": self.rank,
            "method": self.method,
            "score": round(self.score, 6),
            "cosine": round(self.cosine, 6),
            "rank_score": None if self.rank_score is None else round(self.rank_score, 6),
            "probability": round(self.probability, 6),
            "lon": round(self.lon, 7),
            "lat": round(self.lat, 7),
            "x": round(self.x, 2),
            "y": round(self.y, 2),
            "size_m": self.size_m,
            "rotation_deg": self.rotation,
            "retrieval_rank": self.retrieval_rank,
            "chip_ids": self.chip_ids,
            "merged_ranks": self.merged_ranks,
            "match": self.match.as_dict() if self.match else None,
            "centre_sigma_m": _round(self.centre_sigma_m, 2),
            "conflict": self.conflict,
            "evidence": self.evidence,
        }
        if self.method == "refined":
            d.update(
                heading_deg=round(self.heading_deg, 2),
                heading_sigma_deg=_round(self.heading_sigma_deg, 2),
                retrieval_lon=round(self.retrieval_lonlat[0], 7),
                retrieval_lat=round(self.retrieval_lonlat[1], 7),
            )
        d["footprint_wkt"] = self.footprint_wkt(crs)
        return d

    def footprint_wkt(self, crs=None) -> str:
        ring = list(self.footprint)
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        if crs is None:
            return "POLYGON ((" + ", ".join(f"{x:.2f} {y:.2f}" for x, y in ring) + "))"
        xs, ys = np.array(ring).T
        lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(xs, ys)
        pts = ", ".join(f"{a:.7f} {b:.7f}" for a, b in zip(lon, lat, strict=True))
        return f"POLYGON (({pts}))"


def _round(v: float | None, n: int) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), n)


@dataclass
class Heatmap:
    values: np.ndarray  # float32 [rows, cols], NaN where no chip
    geotransform: tuple[float, ...]
    crs_wkt: str


@dataclass
class LocateResult:
    candidates: list[Candidate]
    heatmap: Heatmap | None
    chips: list[tuple[int, float, int]] = field(default_factory=list)  # (id, score, cand rank)
    seconds: float = 0.0
    priors_used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    # The GPS prior's circle: where the metadata alone puts the view centre (lon, lat, metres).
    prior_circle: tuple[float, float, float] | None = None
    prior: MetadataPrior | None = None  # the metadata's prior density (core.posterior)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step


def _overlap(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    (ax, ay, asz), (bx, by, bsz) = a, b
    w = min(ax + asz / 2, bx + bsz / 2) - max(ax - asz / 2, bx - bsz / 2)
    h = min(ay + asz / 2, by + bsz / 2) - max(ay - asz / 2, by - bsz / 2)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(asz, bsz) ** 2


def _places(index: Index, rows: np.ndarray, rot: np.ndarray) -> tuple[list[dict], list[int]]:
    """Chips (in rank order) grouped into places: a chip joins the first place it overlaps by
    MERGE_OVERLAP; (places with their member chips, each chip's place)."""
    seeds: list[dict] = []
    chip_rank: list[int] = []
    for j, row in enumerate(rows):
        box = (index.cx[row], index.cy[row], index.sizes[row])
        for c, seed in enumerate(seeds):
            if _overlap(seed["box"], box) >= MERGE_OVERLAP:
                seed["members"].append(j)
                chip_rank.append(c)
                break
        else:
            seeds.append({"box": box, "members": [j], "rot": int(rot[j])})
            chip_rank.append(len(seeds) - 1)
    return seeds, chip_rank


def search_max(
    index: Index, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chip ids, scores, best rotation row) of the top-k chips, score = max over queries."""
    scores, ids = index.search(queries, k, allowed_ids)
    best: dict[int, tuple[float, int]] = {}
    for r in range(len(queries)):
        for s, i in zip(scores[r], ids[r], strict=True):
            if i >= 0 and (i not in best or s > best[i][0]):
                best[int(i)] = (float(s), r)
    order = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
    return (
        np.array([i for i, _ in order], np.int64),
        np.array([v[0] for _, v in order], np.float32),
        np.array([v[1] for _, v in order], np.int64),
    )


def locate(
    index: Index,
    queries: np.ndarray,
    logit_scale: float,
    top_k: int = 10,
    retrieve: int | None = None,
    region: tiling.Region | None = None,
    rotations: tuple[int, ...] = (0,),
    heatmap: bool = True,
    allowed: np.ndarray | None = None,
) -> LocateResult:
    """Ranked candidate places for query embeddings [R, D] (rows = rotations); `allowed`
    (chip ids) narrows the search further than `region`."""
    t0 = time.perf_counter()
    if region is not None and region.geometry is not None:
        in_region = index.ids_in(region)
        allowed = in_region if allowed is None else np.intersect1d(allowed, in_region)
    retrieve = retrieve or max(50, 5 * top_k)
    while True:
        ids, scores, rot = search_max(index, queries, retrieve, allowed)
        rows = index.row_of(ids) if len(ids) else np.zeros(0, np.int64)
        seeds, chip_rank = _places(index, rows, rot)
        # A sure model spends its best chips on few places: fetch more until there are top_k
        # places or no chips are left, so an analyst still gets the alternatives asked for.
        if len(seeds) >= top_k or len(ids) < retrieve:
            break
        retrieve *= 4
    # Pooled scores (module docstring): scores[0] is the best chip's, so no term overflows.
    pooled = [
        float(scores[0]) + math.log(float(np.sum(np.exp(
            logit_scale * (scores[s["members"]] - scores[0]))))) / logit_scale
        for s in seeds
    ]  # fmt: skip
    order = sorted(range(len(seeds)), key=lambda c: -pooled[c])[:top_k]  # stable: ties by cosine
    new_rank = {c: r for r, c in enumerate(order)}
    seeds = [seeds[c] for c in order]
    chip_rank = [new_rank.get(c, -1) for c in chip_rank]

    top = np.array([pooled[c] for c in order], np.float64)
    prob = np.exp(logit_scale * (top - top.max())) if len(top) else top
    prob = prob / prob.sum() if len(top) else prob
    to_ll = Transformer.from_crs(index.crs, 4326, always_xy=True)
    candidates = []
    for c, seed in enumerate(seeds):
        m = np.array(seed["members"])
        w = np.exp(logit_scale * (scores[m] - scores[m].max()))
        mrows = rows[m]
        x = float(np.sum(w * index.cx[mrows]) / w.sum())
        y = float(np.sum(w * index.cy[mrows]) / w.sum())
        lon, lat = to_ll.transform(x, y)
        sx, sy, size = seed["box"]
        candidates.append(
            Candidate(
                rank=c + 1,
                score=float(top[c]),
                probability=float(prob[c]),
                cosine=float(scores[seed["members"][0]]),
                x=x,
                y=y,
                lon=float(lon),
                lat=float(lat),
                size_m=float(size),
                footprint=tiling.chip_polygon(sx, sy, size),
                chip_ids=[int(i) for i in ids[m]],
                chip_scores=[float(s) for s in scores[m]],
                rotation=rotations[seed["rot"]] if seed["rot"] < len(rotations) else 0,
                retrieval_rank=c + 1,
            )
        )
    chips = [
        (int(ids[j]), float(scores[j]), chip_rank[j] + 1)
        for j in range(len(ids))
        if chip_rank[j] >= 0
    ]
    heat = heatmap_of(index, queries, allowed) if heatmap else None
    return LocateResult(candidates, heat, chips, time.perf_counter() - t0)


def heatmap_of(
    index: Index, queries: np.ndarray, allowed_ids: np.ndarray | None = None
) -> Heatmap | None:
    """Every chip's score (max over queries) rasterised: a pixel holds the best score of the
    chips covering it, at half the smallest stride."""
    n = index.faiss_index.ntotal if allowed_ids is None else len(allowed_ids)
    if n == 0 or index.manifest["factory"] != "IDMap2,Flat":
        return None  # approximate indexes: scoring every chip would defeat their purpose
    ids, scores, _ = search_max(index, queries, n, allowed_ids)
    rows = index.row_of(ids)
    sizes = index.sizes[rows]
    overlap = index.manifest["grid"]["overlap"]
    res = float(sizes.min() * (1 - overlap) / 2)
    half = sizes / 2
    x0, x1 = float((index.cx[rows] - half).min()), float((index.cx[rows] + half).max())
    y0, y1 = float((index.cy[rows] - half).min()), float((index.cy[rows] + half).max())
    cols, nrows = int(np.ceil((x1 - x0) / res)), int(np.ceil((y1 - y0) / res))
    grid = np.full((nrows, cols), -np.inf, np.float32)
    for j in range(len(rows)):
        r = rows[j]
        c0 = int((index.cx[r] - half[j] - x0) / res)
        r0 = int((y1 - index.cy[r] - half[j]) / res)
        n_px = max(1, round(sizes[j] / res))
        view = grid[r0 : r0 + n_px, c0 : c0 + n_px]
        np.maximum(view, scores[j], out=view)
    grid[np.isinf(grid)] = np.nan
    return Heatmap(grid, (x0, res, 0.0, y1, 0.0, -res), index.crs.to_wkt())


@dataclass
class QueryOptions:
    """How to run one query; the defaults are what the CLI, the dock and Processing use."""

    top_k: int = defaults.TOP_K
    rotations: tuple[int, ...] = DEFAULT_ROTATIONS
    view: str = defaults.VIEW
    text_weight: float = defaults.TEXT_WEIGHT
    region: tiling.Region | None = None
    heatmap: bool = True
    rerank: bool = defaults.RERANK
    refine: bool = defaults.REFINE
    rerank_top: int = defaults.RERANK_TOP  # candidates matched geometrically
    priors: PriorOptions = field(default_factory=PriorOptions)
    posterior: bool = True  # metadata prior as a candidate and a gate (core.fusion)

    def as_dict(self) -> dict:
        return {"top_k": self.top_k, "rotations": list(self.rotations), "view": self.view,
                "text_weight": self.text_weight, "rerank": self.rerank, "refine": self.refine,
                "rerank_top": self.rerank_top, "priors": self.priors.as_dict(),
                "posterior": self.posterior}  # fmt: skip


def set_probabilities(candidates: list[Candidate], logit_scale: float) -> None:
    """probability = softmax(logit_scale * score) over the candidates, in their order: the
    score that ranked them, so that probability falls with rank (ties aside)."""
    if not candidates:
        return
    scores = np.array([c.score for c in candidates], np.float64)
    prob = np.exp(logit_scale * (scores - scores.max()))
    for c, p in zip(candidates, prob / prob.sum(), strict=True):
        c.probability = float(p)


def merge_same_spot(candidates: list[Candidate]) -> list[Candidate]:
    """Refined candidates whose centres agree within their uncertainty are one place, seen
    from two neighbouring chips: the two would split the probability between them. The
    better ranked keeps its rank, score, centre and footprint, and takes the other's chips (its
    retrieval evidence stays the better-retrieved one's pooled score: not summed with the other's,
    so that merging never raises a place's retrieval probability);
    it stands for the best retrieval rank (and cosine) among them, the others' retrieval
    ranks are kept in `merged_ranks`. Candidates are re-numbered from 1."""
    kept: list[Candidate] = []
    for c in candidates:
        same = next((k for k in kept if _same_spot(k, c)), None)
        if same is None:
            kept.append(c)
            continue
        ranks = set(same.merged_ranks or [same.retrieval_rank]) | set(
            c.merged_ranks or [c.retrieval_rank]
        )
        same.merged_ranks = sorted(ranks)
        if c.retrieval_rank < same.retrieval_rank:
            same.retrieval_rank, same.retrieval_lonlat = c.retrieval_rank, c.retrieval_lonlat
            same.cosine, same.retrieval_score = c.cosine, c.retrieval_score
        chips = dict(zip(same.chip_ids, same.chip_scores, strict=True))
        for i, sc in zip(c.chip_ids, c.chip_scores, strict=True):
            chips[i] = max(sc, chips.get(i, sc))
        order = sorted(chips, key=lambda i: -chips[i])
        same.chip_ids, same.chip_scores = order, [chips[i] for i in order]
    for r, c in enumerate(kept, start=1):
        c.rank = r
    return kept


def _same_spot(a: Candidate, b: Candidate) -> bool:
    if a.method != "refined" or b.method != "refined":
        return False
    sigmas = [s for s in (a.centre_sigma_m, b.centre_sigma_m) if s is not None and np.isfinite(s)]
    widths = [_width(c.footprint) for c in (a, b)]
    tolerance = max(MERGE_SIGMAS * math.sqrt(sum(s * s for s in sigmas)), MERGE_MIN_M,
                    MERGE_FOOTPRINT * min(widths))  # fmt: skip
    return float(np.hypot(a.x - b.x, a.y - b.y)) <= tolerance


def _width(ring) -> float:
    """The square root of a footprint ring's area (0 without one)."""
    if not ring or len(ring) < 3:
        return 0.0
    return math.sqrt(ring_area(ring))


def matcher_for(index: Index) -> tuple[Matcher | None, str | None]:
    """(matcher, None), or (None, why re-ranking cannot run: said once per run)."""
    try:
        return Matcher.for_index(index), None
    except RasterUnavailable as e:
        return None, f"re-ranking off, retrieval only: {e}"


def locate_query(
    index: Index,
    encoders: Encoders,
    image: np.ndarray | None = None,
    meta: PhotoMeta | None = None,
    text_emb: np.ndarray | None = None,
    options: QueryOptions | None = None,
    matcher: Matcher | None = None,
) -> LocateResult:
    """photo (and/or description) -> embedding -> priors -> index search -> candidates ->
    geometric re-ranking and refinement (when a matcher is given and the options ask for it)."""
    o = options or QueryOptions()
    t0 = time.perf_counter()
    pri = priors_for(meta if image is not None else None,
                     (image.shape[1], image.shape[0]) if image is not None else (0, 0),
                     o.priors)  # fmt: skip
    rotations = (pri.rotation,) if pri.rotation is not None else (o.rotations or (0,))
    flip = bool(index.manifest.get("flip_tta", True))  # older indexes were all built with it
    photo = (
        photo_embeddings(encoders, image, o.view, rotations, flip) if image is not None else None
    )
    q = fuse(photo, text_emb, o.text_weight)
    rots = rotations if photo is not None else (0,)
    t1 = time.perf_counter()
    allowed = pri.allowed_ids(index.ids, index.cx, index.cy, index.sizes, index.crs)
    retrieve = max(50, 5 * max(o.top_k, o.rerank_top))
    keep = max(o.top_k, o.rerank_top if o.rerank else 0)
    res = locate(index, q, encoders.bundle.logit_scale, keep, retrieve, o.region, rots,
                 o.heatmap, allowed)  # fmt: skip
    t2 = time.perf_counter()
    res.timings = {"embed": t1 - t0, "search": t2 - t1}
    res.priors_used, res.notes = list(pri.used), list(pri.notes)
    if "gps" in pri.used:
        res.prior_circle = (*pri.centre_lonlat, pri.radius_m)
    prior = None
    # A GPS fix the priors dropped (outside the index, or switched off) is no candidate either.
    if image is not None and o.posterior and "gps" in pri.used:
        prior = metadata_prior(meta, (image.shape[1], image.shape[0]), o.priors, index.crs)
    res.prior, prior_match = prior, None
    if image is not None and o.rerank and matcher is not None and res.candidates:
        for c in res.candidates:
            c.retrieval_lonlat = (c.lon, c.lat)
        matcher.set_photo(image, pri.camera)
        if prior is not None:  # the metadata's own window first
            prior_match = fusion.match_prior(matcher, prior, pri.footprint_m,
                                             res.candidates[0].size_m)  # fmt: skip
        res.candidates = rerank(res.candidates, matcher, o.rerank_top, o.refine, pri.footprint_m)
        to_ll = Transformer.from_crs(index.crs, 4326, always_xy=True)
        for c in res.candidates:
            if c.method == "refined":
                c.lon, c.lat = (float(v) for v in to_ll.transform(c.x, c.y))
        res.candidates = merge_same_spot(res.candidates)
        set_probabilities(res.candidates, encoders.bundle.logit_scale)
        res.timings["rerank"] = time.perf_counter() - t2
    if image is not None and o.posterior:
        res.candidates = fusion.fuse(res.candidates, prior, index.crs,
                                     encoders.bundle.logit_scale, prior_match, Candidate,
                                     pri.footprint_m)  # fmt: skip
    fusion.state_uncertainty(res.candidates)
    res.candidates = res.candidates[: o.top_k]
    new_rank = {r: c.rank for c in res.candidates for r in (c.retrieval_rank, *c.merged_ranks)}
    res.chips = [(i, s, new_rank[r]) for i, s, r in res.chips if r in new_rank]
    res.seconds = time.perf_counter() - t0
    return res
