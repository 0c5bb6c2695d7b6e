"""`python -m geolab calibrate`: fit the candidates' probabilities on a training world.

Runs the full pipeline at every metadata level on one world (`levels.run_world`, never an
evaluation world) and fits, per kind of candidate (refined, conflict, metadata, retrieval), a
Platt scaling p = sigmoid(a + b * feature) of "this candidate lies within 50 m of the truth"
(`core.fusion.calibration_feature`). The coefficients go into `core.fusion.CALIBRATION` by hand
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
    """Logistic regression of y (0/1) on x: (a, b), Newton's method with a little L2 on b."""
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


def fit(candidates: list[dict], radius: float = CALIBRATION_RADIUS_M) -> dict:
    """Per kind (a, b); kinds with too few candidates, or only hits or only misses, keep
    today's coefficients (an all-hit kind gets a high constant instead)."""
    out = dict(CALIBRATION)
    for kind in CALIBRATION:
        sel = [c for c in candidates if c["kind"] == kind and math.isfinite(c["feature"])]
        if len(sel) < MIN_PER_KIND:
            continue
        x = [c["feature"] for c in sel]
        y = [c["error_m"] <= radius for c in sel]
        share = float(np.mean(y))
        if share in (0.0, 1.0):
            q = min(max(share, 0.5 / len(y)), 1 - 0.5 / len(y))
            out[kind] = (round(math.log(q / (1 - q)), 3), 0.0)
        else:
            a, b = fit_platt(x, y)
            out[kind] = (round(a, 3), round(b, 3))
    return out


def calibrate(bundle_dir: Path, world: Path, out: Path, photos: int | None = None,
              log=print) -> dict:  # fmt: skip
    bundle = Bundle.load(bundle_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = run_world(bundle, Path(world), out / "cache" / Path(world).name, EVAL_SEED + 1,
                     photos, yaw_errors=(), previous=False, log=log)  # fmt: skip
    table = fit(runs.candidates)
    counts = {k: sum(c["kind"] == k for c in runs.candidates) for k in CALIBRATION}
    (out / "calibration.json").write_text(json.dumps(
        {"world": str(world), "coefficients": table, "candidates": counts,
         "records": runs.candidates}, indent=1))  # fmt: skip
    return table
