"""`python -m geolab calibrate`: fit the candidates' probabilities on a training world.

Runs the full pipeline at every metadata level on one world (`levels.run_world`, never an
evaluation world) and fits, per kind of candidate (refined, conflict, metadata, retrieval), a
Platt scaling p = sigmoid(a + b * feature) of "this candidate lies within 50 m of the truth"
(`core.fusion.calibration_feature`), and the floor of a refined centre's stated uncertainty
(`fit_sigma_floor`). Both go into `core.fusion` (CALIBRATION, REFINED_SIGMA_FLOOR_M) by hand
(printed and written to OUT/calibration.json), so a calibration is a reviewed change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.fusion import CALIBRATION, CALIBRATION_RADIUS_M

from .levels import EVAL_SEED, run_world

MIN_PER_KIND = 8  # fewer candidates of a kind: keep its coefficients


def fit_platt(x, y, l2: float = 1e-2, iters: int = 50) -> tuple[float, float]:
    """Logistic regression of y on x: (a, b), Newton's method with a little L2 on b. y may be
    0/1 or soft targets in (0, 1)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.zeros(2)
    X = np.c_[np.ones_like(x), x]
    reg = np.diag([1e-6, l2])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -50, 50)))
        g = X.T @ (p - y) + reg @ w
        H = X.T @ (X * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def platt_targets(hits) -> np.ndarray:
    """Platt's own targets: (N+ + 1) / (N+ + 2) for a hit, 1 / (N- + 2) for a miss. From a few
    dozen candidates that all hit, "certain" is not what was learnt: 38 of 38 says about 97 %."""
    hits = np.asarray(hits, bool)
    n_pos, n_neg = int(hits.sum()), int((~hits).sum())
    return np.where(hits, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def fit(candidates: list[dict], radius: float = CALIBRATION_RADIUS_M) -> dict:
    """Per kind (a, b), fitted to Platt's targets; kinds with too few candidates keep today's
    coefficients; an all-hit or all-miss kind gets a constant (its target)."""
    out = dict(CALIBRATION)
    for kind in CALIBRATION:
        sel = [c for c in candidates if c["kind"] == kind and math.isfinite(c["feature"])]
        if len(sel) < MIN_PER_KIND:
            continue
        x = [c["feature"] for c in sel]
        y = platt_targets([c["error_m"] <= radius for c in sel])
        if np.ptp(y) == 0:
            q = float(y[0])
            out[kind] = (round(math.log(q / (1 - q)), 3), 0.0)
        else:
            a, b = fit_platt(x, y)
            out[kind] = (round(a, 3), round(b, 3))
    return out


def fit_sigma_floor(candidates: list[dict], k: float = 2.0, radius: float = CALIBRATION_RADIUS_M,
                    coverage: float | None = None) -> float | None:  # fmt: skip
    """The floor (m) that, added in quadrature to each refined candidate's own match sigma,
    puts `coverage` (a normal's share within k sigma) of those within `radius` of the truth
    within k sigma; None with fewer than MIN_PER_KIND. Wrong matches (beyond `radius`) are the
    probability's business, not the uncertainty's."""
    coverage = 1 - math.exp(-k * k / 2) if coverage is None else coverage
    own = [(c["error_m"], c.get("match_sigma_m")) for c in candidates if c["kind"] == "refined"]
    own = [(e, s) for e, s in own if s is not None and math.isfinite(s) and e <= radius]
    if len(own) < MIN_PER_KIND:
        return None
    need = [math.sqrt(max((e / k) ** 2 - s * s, 0.0)) for e, s in own]
    return round(float(np.quantile(need, coverage)), 2)


def calibrate(bundle_dir: Path, world: Path, out: Path, photos: int | None = None,
              log=print) -> tuple[dict, float | None]:  # fmt: skip
    """(CALIBRATION's coefficients, REFINED_SIGMA_FLOOR_M) fitted on `world`."""
    bundle = Bundle.load(bundle_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = run_world(bundle, Path(world), out / "cache" / Path(world).name, EVAL_SEED + 1,
                     photos, yaw_errors=(), previous=False, log=log)  # fmt: skip
    table = fit(runs.candidates)
    floor = fit_sigma_floor(runs.candidates)
    counts = {k: sum(c["kind"] == k for c in runs.candidates) for k in CALIBRATION}
    (out / "calibration.json").write_text(json.dumps(
        {"world": str(world), "coefficients": table, "refined_sigma_floor_m": floor,
         "candidates": counts, "records": runs.candidates}, indent=1))  # fmt: skip
    return table, floor
