"""The paper's retrieval metrics, as the official test code computes them (with L@ working).

For each query, `ranks` holds the 1-based rank of its first positive in the gallery (inf when
none is there). R@k: the share with rank <= k. MRR: the mean reciprocal rank of the first
positive, which the official code calls "AP" (kept under that key too); with several positive
chips per query it is not average precision. mAP: the mean over queries of the average
precision over *all* their positives (`mean_average_precision`; a query with none counts 0).
R@1%: rank <= max(1, int(0.01 * gallery size)).
L@d: the share of queries whose top-1 result's centre lies within d metres (haversine) of the
query's true centre (`geobridge_qgis.core.geodesy.haversine_m`).
"""

from __future__ import annotations

import numpy as np

# Degrees off nadir: the bands the evaluation reports (the top one holds 85 itself).
TILT_BANDS = ((0, 30), (30, 55), (55, 70), (70, 85.01))


def first_positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked positive per query. scores, positives: [Q, G]."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hit = np.take_along_axis(positives, order, axis=1)
    ranks = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)
    return ranks.astype(float)


def retrieval_metrics(ranks: np.ndarray, gallery_size: int) -> dict[str, float]:
    ranks = np.asarray(ranks, float)
    one_pct = max(1, int(0.01 * gallery_size))
    return {
        "R@1": float(np.mean(ranks <= 1) * 100),
        "R@5": float(np.mean(ranks <= 5) * 100),
        "R@1%": float(np.mean(ranks <= one_pct) * 100),
        "AP": float(np.mean(1.0 / ranks) * 100),  # the official code's name for MRR
        "MRR": float(np.mean(1.0 / ranks) * 100),
    }


def mean_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Mean over queries of the average precision over all positives (percent)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hit = np.take_along_axis(positives, order, axis=1).astype(float)
    n_pos = hit.sum(1)
    precision = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    ap = np.where(n_pos > 0, (precision * hit).sum(1) / np.maximum(n_pos, 1), 0.0)
    return float(ap.mean() * 100)


def localisation_metrics(errors_m: np.ndarray, radii=(50, 100, 150)) -> dict[str, float]:
    errors_m = np.asarray(errors_m, float)
    out = {f"L@{r}": float(np.mean(errors_m <= r) * 100) for r in radii}
    out["median_m"] = float(np.median(errors_m)) if len(errors_m) else float("nan")
    return out
