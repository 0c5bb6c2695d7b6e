"""The refiner's geometry helpers: the centre read through the camera's rectified view, and
the footprint shape gate."""

from __future__ import annotations

import math

import numpy as np

from geobridge_qgis.core import fit_geometry, photo_view, refine
from geobridge_qgis.core.camera import Camera

SIZE = (640, 480)


def test_similarity_fit_extrapolates_through_the_camera():
    cam = Camera(0.0, 0.0, 100.0, 30.0, 60.0, 70.0)
    view = photo_view.make_view(np.zeros((480, 640, 3), np.uint8), cam, 0.5, 100.0)
    # The true map photo -> window: the rectified view turned by 7 deg, scaled, shifted.
    a, s = math.radians(7.0), 1.1
    sim = np.array([[s * math.cos(a), -s * math.sin(a), 40.0],
                    [s * math.sin(a), s * math.cos(a), -25.0], [0, 0, 1.0]])  # fmt: skip
    truth = sim @ np.linalg.inv(view.to_photo)
    # Matches only on the near ground (the bottom rows), the centre far outside them.
    rng = np.random.default_rng(0)
    src = np.column_stack([rng.uniform(0, 639, 30), rng.uniform(400, 479, 30)])
    h = np.c_[src, np.ones(30)] @ truth.T
    dst = h[:, :2] / h[:, 2:] + rng.normal(0, 0.3, (30, 2))
    fit = fit_geometry.similarity_fitter(view.to_photo)(src, dst)
    c = np.array([319.5, 239.5, 1.0])
    got, want = fit @ c, truth @ c
    assert np.linalg.norm(got[:2] / got[2] - want[:2] / want[2]) < 1.0


def test_shape_gate_keeps_the_camera_footprint_and_rejects_a_distorted_one():
    cam = Camera(0.0, 0.0, 100.0, 0.0, 45.0, 70.0)
    model = photo_view.ground_offsets(cam, SIZE, photo_view.ground_part(cam, SIZE))
    a = math.radians(40.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    moved = 1.2 * model @ rot.T + [5000.0, 3000.0]
    assert fit_geometry.shape_error(cam, SIZE, moved) < 0.01
    # The same area as a rectangle: an oblique view's trapezoid lost.
    lo, hi = model.min(0), model.max(0)
    box = np.array([[lo[0], hi[1]], [hi[0], hi[1]], [hi[0], lo[1]], [lo[0], lo[1]]])
    assert fit_geometry.shape_error(cam, SIZE, box) > refine.SHAPE_MAX
