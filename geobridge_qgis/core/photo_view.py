"""The photo as the refiner matches it: at the satellite window's ground resolution and, when
the camera is known (altitude and gimbal pitch), warped onto the ground.

Pixel convention: the photo's own pixels with integer values at pixel centres (OpenCV's), so
the image spans [-0.5, W-0.5] x [-0.5, H-0.5] and its centre is ((W-1)/2, (H-1)/2).

Only the **ground part** of an oblique frame is used: the rows whose ground lies at most
MAX_OFF_NADIR_DEG off nadir (`Camera.ground_rows`). Above it a near-horizontal view shows the
horizon, or ground so foreshortened that a warp would stretch a few pixels over hundreds of
metres. The footprint the refiner checks and reports is that part's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .camera import Camera

MAX_OFF_NADIR_DEG = 68.0  # 2.5 x the altitude ahead
WARP_MAX_PX = 3000  # a warped photo larger than this is made coarser (memory, SIFT's time)


@dataclass
class PhotoView:
    """The photo prepared for one ground resolution."""

    image: np.ndarray  # what is matched: scaled, and warped onto the ground with a camera
    mask: np.ndarray | None  # the warped photo's pixels (None: all)
    to_photo: np.ndarray  # 3x3: matched image pixels -> the photo's own pixels
    ground_part: np.ndarray  # (4, 2) the usable part of the frame, photo pixels
    res: float  # metres per pixel of `image` (nominal when not warped)
    cache: dict = field(default_factory=dict)  # keypoints and descriptions, per method


def ground_part(camera: Camera | None, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if camera is None:
        return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    return camera.ground_part(size, MAX_OFF_NADIR_DEG)


def ground_offsets(camera: Camera, size: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Photo pixels -> metres (east, north) from the point below the camera."""
    G = camera.image_to_nadir_offsets(size, "centres")
    return cv2.perspectiveTransform(np.float64(pts).reshape(-1, 1, 2), G).reshape(-1, 2)


def turned_offsets(camera: Camera, size: tuple[int, int], angle_deg: float) -> np.ndarray:
    """3x3: photo pixels -> metres (east, north) from the ground point of the photo's centre,
    turned by a yaw offset `angle_deg` (offset +a: the true heading is a less than the tag):
    where a yaw hypothesis puts each pixel's ground around the photo's centre."""
    w, h = size
    G = camera.image_to_nadir_offsets(size, "centres")
    c = cv2.perspectiveTransform(np.float64([[[(w - 1) / 2, (h - 1) / 2]]]), G).reshape(2)
    a = math.radians(angle_deg)
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return R @ np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]]) @ G


def photo_resolution(camera: Camera | None, size: tuple[int, int], expected_m: float) -> float:
    """Metres of ground per photo pixel in the middle of its ground part."""
    if camera is None:
        return expected_m / size[0]
    gp = ground_part(camera, size)
    mid = np.array([[(size[0] - 1) / 2, (gp[0, 1] + gp[2, 1]) / 2]])
    return float(camera.ground_resolution(mid, size)[0])


def extent_m(
    camera: Camera | None, size: tuple[int, int], expected_m: float, yaw_error_deg: float
) -> tuple[float, float]:
    """Half the width and height of the box that holds the photo's ground part around its
    centre (the image centre's ground point), for any heading within the yaw error (any
    heading at all without a camera heading)."""
    if camera is None:
        r = 0.8 * expected_m  # a 4:3 frame's corner is 0.625 widths out, more when oblique
        return r, r
    w, h = size
    pts = ground_offsets(camera, size, np.vstack([ground_part(camera, size),
                                                  [[(w - 1) / 2, (h - 1) / 2]]]))  # fmt: skip
    rel = pts[:4] - pts[4]
    if camera.heading_deg is None:
        r = float(np.linalg.norm(rel, axis=1).max())
        return r, r
    out = np.zeros(2)
    for a in np.radians(np.linspace(-yaw_error_deg, yaw_error_deg, 7)):
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        out = np.maximum(out, np.abs(rel @ rot.T).max(0))
    return float(out[0]), float(out[1])


def ground_area_m2(camera: Camera | None, size: tuple[int, int], expected_m: float) -> float:
    """The area of ground the photo's ground part covers, by the camera model (a 4:3 frame at
    nadir without one)."""
    if camera is None:
        return 0.75 * expected_m**2
    quad = ground_offsets(camera, size, ground_part(camera, size))
    return abs(float(cv2.contourArea(np.float32(quad))))


def make_view(photo: np.ndarray, camera: Camera | None, res: float, expected_m: float) -> PhotoView:
    """The photo at `res` metres per pixel: scaled (no camera) or warped onto the ground, north
    up when the camera's heading is known."""
    h, w = photo.shape[:2]
    size = (w, h)
    gp = ground_part(camera, size)
    s = min(1.0, photo_resolution(camera, size, expected_m) / res)
    img = photo
    if s < 1:
        img = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    sx, sy = img.shape[1] / w, img.shape[0] / h  # the rounded sizes' true scale
    from_scaled = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1.0]])
    if camera is None:
        return PhotoView(img, None, from_scaled, gp, res)
    G = camera.image_to_nadir_offsets(size, "centres")
    ground = cv2.perspectiveTransform(np.float64(gp).reshape(-1, 1, 2), G).reshape(-1, 2)
    lo, hi = ground.min(0), ground.max(0)
    if ((hi - lo) / res).max() > WARP_MAX_PX:
        res = float((hi - lo).max() / WARP_MAX_PX)
    size_px = np.ceil((hi - lo) / res).astype(int) + 1
    # Warped pixel (i, j) centre <-> ground (lo_x + j * res, hi_y - i * res).
    to_px = np.array([[1 / res, 0, -lo[0] / res], [0, -1 / res, hi[1] / res], [0, 0, 1]])
    warp = to_px @ G @ from_scaled
    dsize = (int(size_px[0]), int(size_px[1]))
    out = cv2.warpPerspective(img, warp, dsize, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
    # Only the ground part: rows above it are sky or smeared far ground.
    poly = cv2.perspectiveTransform(np.float64(gp).reshape(-1, 1, 2), to_px @ G)
    mask = np.zeros((dsize[1], dsize[0]), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly.reshape(-1, 2)).astype(np.int32), 255)
    return PhotoView(out, mask, np.linalg.inv(to_px @ G), gp, res)
