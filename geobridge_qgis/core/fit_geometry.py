"""Geometry of a fitted match (`refine`): reading the photo's centre and heading from a fit,
their uncertainty by bootstrap, and how far a matched footprint's shape is from the camera
model's."""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import photo_view
from .camera import Camera


def shape_error(camera: Camera | None, size: tuple[int, int], quad: np.ndarray) -> float:
    """How far the matched footprint's shape is from the camera model's: the RMS of its
    corners after the best similarity onto them, over the matched footprint's RMS radius."""
    if camera is None:
        return 0.0
    model = photo_view.ground_offsets(camera, size, photo_view.ground_part(camera, size))
    p = model - model.mean(0)
    q = np.float64(quad) - np.mean(quad, 0)
    zp, zq = p[:, 0] + 1j * p[:, 1], q[:, 0] + 1j * q[:, 1]
    a = np.vdot(zp, zq) / np.vdot(zp, zp)
    r = a * zp - zq
    return float(np.sqrt(np.mean(np.abs(r) ** 2)) / np.sqrt(np.mean(np.abs(zq) ** 2)))


def bearing(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360)


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    return cv2.findHomography(src, dst, 0)[0]


def similarity_fitter(to_photo: np.ndarray):
    """A fit of photo -> window pixels through the camera's rectified view (`to_photo`: view
    -> photo pixels) and a least-squares similarity of the view onto the window: the camera
    model, not the homography's perspective terms, carries the fit beyond its points."""
    to_view = np.linalg.inv(to_photo)

    def fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
        pv = cv2.perspectiveTransform(np.float64(src).reshape(-1, 1, 2), to_view).reshape(-1, 2)
        n = len(pv)
        if n < 2:
            return None
        a = np.zeros((2 * n, 4))  # [x' y'] = [p -q; q p] [x y] + t
        a[0::2] = np.column_stack([pv[:, 0], -pv[:, 1], np.ones(n), np.zeros(n)])
        a[1::2] = np.column_stack([pv[:, 1], pv[:, 0], np.zeros(n), np.ones(n)])
        p, q, tx, ty = np.linalg.lstsq(a, np.float64(dst).reshape(-1), rcond=None)[0]
        return np.array([[p, -q, tx], [q, p, ty], [0.0, 0.0, 1.0]]) @ to_view

    return fit


def bootstrap(
    src, dst, key, to_ground, res, n_resamples: int, fit=fit_homography
) -> tuple[float, float]:
    rng = np.random.default_rng(0)  # fixed: the same photo gives the same uncertainty
    centres, headings = [], []
    n = len(src)
    for _ in range(n_resamples):
        pick = rng.integers(0, n, n)
        h = fit(src[pick], dst[pick])
        if h is None:
            continue
        c, u = to_ground(h, key)
        centres.append(c)
        headings.append(bearing(c, u))
    if len(centres) < 3:
        return float("nan"), float("nan")
    c = np.array(centres)
    spread = float(np.sqrt(np.mean(np.sum((c - c.mean(0)) ** 2, axis=1))))
    angles = np.radians(headings)
    r = math.hypot(np.mean(np.sin(angles)), np.mean(np.cos(angles)))
    circ_sd = math.degrees(math.sqrt(max(-2 * math.log(max(r, 1e-12)), 0.0)))
    return spread + res / 2, circ_sd
