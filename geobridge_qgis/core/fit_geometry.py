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


def guide(camera: Camera, shape: tuple, pts: np.ndarray, to_photo: np.ndarray,
          centre: tuple[float, float, float], angle: float,
          window: tuple[float, float, float], yaw_step_deg: float):  # fmt: skip
    """Where each photo keypoint (matched-image pixels `pts`, `to_photo` back to the photo's of
    `shape`) should fall in the window ((x0, y1, res): its top-left corner and resolution), and
    how far from it it may: the candidate's `centre` (x, y, radius), the camera's ground geometry
    turned by the hypothesis' yaw offset `angle`; the reach allows the search radius, the yaw
    step's error, 10 % of scale (altitude) and a few pixels."""
    cx, cy, radius = centre
    x0, y1, res = window
    size = (shape[1], shape[0])
    to_ground = photo_view.turned_offsets(camera, size, angle) @ to_photo
    rel = cv2.perspectiveTransform(np.float64(pts).reshape(-1, 1, 2), to_ground).reshape(-1, 2)
    ground = rel + [cx, cy]
    pred = np.column_stack([(ground[:, 0] - x0) / res - 0.5, (y1 - ground[:, 1]) / res - 0.5])
    slack = 2 * math.sin(math.radians(yaw_step_deg / 4 + 5.0)) + 0.1
    reach = (radius + slack * np.linalg.norm(rel, axis=1)) / res + 8.0
    return pred, reach


def plausible(camera: Camera | None, quad: np.ndarray, size: tuple[int, int], expected_m: float,
              max_area_ratio: float, camera_area_ratio: float) -> bool:  # fmt: skip
    """A convex footprint of about the area the camera model predicts (with a camera: its
    ground part's, within `camera_area_ratio`; without: a 4:3 frame `expected_m` wide, within
    `max_area_ratio`, twice that above: larger when oblique)."""
    if not cv2.isContourConvex(np.float32(quad).reshape(-1, 1, 2)):
        return False
    area = abs(float(cv2.contourArea(np.float32(quad))))
    ratio = area / photo_view.ground_area_m2(camera, size, expected_m)
    if camera is None:
        return 1 / max_area_ratio <= ratio <= max_area_ratio * 2
    return 1 / camera_area_ratio <= ratio <= camera_area_ratio
