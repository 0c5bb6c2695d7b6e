"""The answer as a posterior: the metadata's prior, retrieval and image matches as evidence.

With a metadata prior (`posterior.metadata_prior`; a GPS position at least):

1. The imagery window around the prior's predicted centre, wide enough for its 3-sigma region
   (`MetadataPrior.window_m`), is matched first (`match_prior`), as well as the top retrieval
   candidates' windows (`refine.rerank`).
2. Every accepted match goes through the consistency gates (`consistency.conflict`): one that
   agrees with the metadata is **consistent** evidence; one that disagrees keeps its place as a
   candidate flagged `conflict` (both positions, why) and is never the answer.
3. The metadata's own point is a candidate ("metadata", its one-sigma uncertainty in metres).
4. Order: consistent matches (strongest geometry first), then the metadata candidate, then
   conflicts and unverified retrieval candidates in their retrieval order. So when matching
   fails the answer is the prior's point with the prior's uncertainty, never a chip centre far
   from it; an accepted match inside the prior wins, refined.

Without a prior the order is the re-ranker's, as before. Either way each candidate gets an
uncertainty (metres, one sigma: the match's bootstrap with a calibrated floor for a refined one,
the prior's for the metadata one, half the chip for an unverified retrieval one) and a
**calibrated probability**: the probability that this candidate lies within 50 m of the truth
(not a share of one answer: two candidates at the same spot can both be likely). Platt scaling
per kind of candidate, p = sigmoid(a + b * feature), with the coefficients in CALIBRATION (and
the floor, REFINED_SIGMA_FLOOR_M) fitted on a training world (`python -m geolab calibrate`,
never the evaluation worlds).
"""

from __future__ import annotations

import math

import numpy as np
from pyproj import Transformer

from .consistency import conflict
from .posterior import MetadataPrior, expected_footprint_m

CALIBRATION_RADIUS_M = 50.0
# Platt coefficients (a, b) per kind of candidate; features in `calibration_feature`.
# Fitted by `python -m geolab calibrate` on the training world (see docs/EVALUATION-metadata.md).
# Fitted on world 4242 (1 km, tilts 0-85, 30 photos x 3 levels, 643 candidates: 47 refined, all
# within 50 m, so a constant; 3 conflicts, too few: even odds; 60 metadata, 35 within 50 m; 533
# retrieval) with the demo model of 2,447 steps (GPU-trained), candidates ranked by their chips'
# pooled retrieval score, dense alignment up to 55 deg off nadir and the error model of
# posterior.SIGMAS, to Platt's targets, so that "all of a few dozen hit" reads as about 98 %,
# not certainty.
CALIBRATION: dict[str, tuple[float, float]] = {
    "refined": (3.871, 0.0),  # feature: the match's confidence (0..1)
    "conflict": (0.0, 0.0),  # too few to fit (3): even odds
    "metadata": (-0.424, 0.786),  # feature: logit of the prior's own P(within 50 m)
    "retrieval": (-1.816, 0.378),  # feature: logit of the retrieval softmax probability
}

# A match's bootstrap says how tightly its inliers pin the centre, not how wrong the model
# behind them can be (relief, a pitch error stretching the warped ground, the camera's focal
# length, a match on a look-alike a few metres off): a refined candidate states
# sqrt(bootstrap^2 + floor^2). The floor is fitted by `python -m geolab calibrate` on the
# training world so that 86 % of its refined candidates within 50 m of the truth lie within 2
# sigma (a normal's share): on world 4242, 47 matches whose bootstraps said 0.9 m (median) were
# 1.2 m off (median), but 8 of them 8-48 m; with the floor 81 / 85 / 96 % lie within 1 / 2 / 3
# sigma (38 / 62 / 74 % without).
REFINED_SIGMA_FLOOR_M = 5.95


def refined_sigma(match_sigma_m: float, floor_m: float | None = None) -> float:
    """The stated one-sigma uncertainty (m) of a refined centre whose match says `match_sigma_m`."""
    floor = REFINED_SIGMA_FLOOR_M if floor_m is None else floor_m
    return math.hypot(match_sigma_m, floor)


def state_uncertainty(candidates: list) -> None:
    """Refined candidates state their centre's uncertainty with the floor (after merging and
    fusion, which compare the matches' own sigmas)."""
    for c in candidates:
        m = c.match
        if c.method == "refined" and m is not None and math.isfinite(m.centre_sigma_m):
            c.centre_sigma_m = refined_sigma(m.centre_sigma_m)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(v, 50.0), -50.0)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def kind_of(c) -> str:
    if c.method == "metadata":
        return "metadata"
    if c.method == "refined":
        return "conflict" if c.conflict else "refined"
    return "retrieval"


def calibration_feature(c, kind: str, prior: MetadataPrior | None) -> float:
    if kind in ("refined", "conflict"):
        return float(c.match.confidence) if c.match is not None else 0.0
    if kind == "metadata":
        return _logit(prior.p_within(CALIBRATION_RADIUS_M)) if prior else 0.0
    return _logit(c.retrieval_probability)


def calibrated(kind: str, feature: float, table: dict | None = None) -> float:
    a, b = (table or CALIBRATION)[kind]
    return _sigmoid(a + b * feature)


def match_prior(matcher, prior: MetadataPrior, footprint_m: float | None, fallback_m: float):
    """The match of the imagery window around the prior's centre: the photo's centre may lie
    anywhere within the prior's 3-sigma reach (a wedge: half its length), the window at most
    MAX_WINDOW_M across plus the photo's own extent."""
    expected = footprint_m or expected_footprint_m(prior) or fallback_m
    reach = (prior.window_m(expected) - expected) / 2
    return matcher.match(prior.x, prior.y, expected, expected, radius_m=max(reach, 1.0))


def metadata_candidate(prior: MetadataPrior, candidate_cls, footprint_m: float | None):
    cam = prior.camera()
    ring = prior.ellipse(1.0)
    if cam is not None and prior.wedge is None and (cam.tilt_deg or 0) < 60:
        fp = cam.footprint(prior.image_size)
        dx, dy = prior.x - cam.centre_ground()[0], prior.y - cam.centre_ground()[1]
        ring = [(float(a + dx), float(b + dy)) for a, b in fp]
    size = footprint_m or expected_footprint_m(prior) or 2 * prior.sigma_m
    c = candidate_cls(rank=0, score=0.0, probability=0.0, x=prior.x, y=prior.y, lon=prior.lon,
                      lat=prior.lat, size_m=float(size), footprint=ring, chip_ids=[],
                      chip_scores=[], rotation=0, method="metadata", retrieval_rank=0)  # fmt: skip
    c.centre_sigma_m = prior.sigma_m
    c.heading_deg = prior.yaw_deg
    c.heading_sigma_deg = prior.yaw_sigma_deg if prior.yaw_deg is not None else None
    return c


def prior_match_candidate(match, prior: MetadataPrior, candidate_cls, crs):
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(match.x, match.y)
    c = candidate_cls(rank=0, score=0.0, probability=0.0, x=match.x, y=match.y, lon=float(lon),
                      lat=float(lat), size_m=float(expected_footprint_m(prior) or 100.0),
                      footprint=list(match.footprint), chip_ids=[], chip_scores=[], rotation=0,
                      method="refined", retrieval_rank=0)  # fmt: skip
    c.match = match
    # The re-ranker's rank score with no retrieval cosine (no chip seeded it): scores stay
    # comparable with the re-ranked candidates' and the table reads top-down.
    from .refine import ACCEPTED_BONUS, GEO_WEIGHT

    c.score = c.rank_score = GEO_WEIGHT * match.confidence + (ACCEPTED_BONUS if match.ok else 0.0)
    c.cosine = c.retrieval_score = 0.0
    c.heading_deg, c.heading_sigma_deg = match.heading_deg, match.heading_sigma_deg
    c.centre_sigma_m = match.centre_sigma_m
    c.retrieval_lonlat = (prior.lon, prior.lat)
    c.evidence = "image match in the metadata's window"
    return c


def fuse(candidates: list, prior: MetadataPrior | None, crs, logit_scale: float,
         prior_match=None, candidate_cls=None, footprint_m: float | None = None,
         table: dict | None = None) -> list:  # fmt: skip
    """Order, flag and calibrate the candidates (see the module docstring)."""
    if candidates:
        # The retrieval score, not the re-ranker's: this is the retrieval evidence.
        top = np.array([c.retrieval_score for c in candidates], np.float64)
        soft = np.exp(logit_scale * (top - top.max()))
        for c, p in zip(candidates, soft / soft.sum(), strict=True):
            c.retrieval_probability = float(p)
    for c in candidates:
        if c.centre_sigma_m is None or c.method != "refined":
            c.centre_sigma_m = c.size_m / 2
        c.evidence = c.evidence or (
            "image match" if c.method == "refined" else "retrieval, unverified"
        )
    out = list(candidates)
    if prior is not None:
        for c in out:
            if c.method == "refined" and c.match is not None:
                c.conflict = conflict(prior, c.match, crs)
        extra = []
        if prior_match is not None and prior_match.ok and candidate_cls is not None:
            pm = prior_match_candidate(prior_match, prior, candidate_cls, crs)
            pm.retrieval_probability = 0.0
            pm.conflict = conflict(prior, prior_match, crs)
            # The window's match and a chip's refined match at one spot are one place: keep
            # the chip's (it carries the retrieval evidence too).
            same = [
                c
                for c in out
                if c.method == "refined"
                and math.hypot(c.x - pm.x, c.y - pm.y)
                <= max(5.0, 2 * max(c.centre_sigma_m or 0.0, pm.centre_sigma_m or 0.0))
            ]
            if not same:
                extra.append(pm)
        meta_c = metadata_candidate(prior, candidate_cls, footprint_m)
        meta_c.retrieval_probability = 0.0
        meta_c.evidence = "metadata alone"
        consistent = [c for c in extra + out if kind_of(c) == "refined"]
        consistent.sort(key=lambda c: -c.score)  # the re-ranker's rank score
        rest = [c for c in extra + out if kind_of(c) != "refined"]
        out = consistent + [meta_c] + rest
    for c in out:
        kind = kind_of(c)
        c.probability = calibrated(kind, calibration_feature(c, kind, prior), table)
    for r, c in enumerate(out, start=1):
        c.rank = r
    return out
