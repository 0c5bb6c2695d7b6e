"""Dense alignment: for photos whose ground has few distinctive points (striped fields, roads,
field edges: local features find a handful of matches there), the whole ground part of the
photo is compared with the satellite window at every shift.

The camera (altitude, pitch, heading) warps the photo onto the ground, north up, at the window's
resolution, once per yaw offset the compass error allows. Both images are reduced to their
gradient magnitude (palettes and seasons differ between a drone photo and the imagery; edges
stay where they are) and correlated (normalised, over the warped photo's pixels only) at every
shift that keeps the photo's centre within the search radius. A peak is accepted only when it
is high and stands clear of every other peak (local maximum, not its own shoulder) more than a
few metres away: along a row of identical stripes the peaks tie and nothing is accepted. Its
uncertainty comes from the peak's width at half its lead over the runner-up. Near-horizon
views, whose ground would make a template over MAX_TEMPLATE_PX, are left to local features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import features, photo_view
from .camera import Camera

PEAK_MIN = 0.28  # normalised correlation of gradient magnitudes
LEAD_MIN = 0.04  # over the best other peak farther than SEPARATION_M
SEPARATION_M = 3.5
BLUR_M = 1.0  # the gradients' smoothing: a metre, whatever the window's resolution
MAX_TEMPLATE_PX = 900


@dataclass
class Alignment:
    H: np.ndarray  # 3x3: photo pixels -> window pixels (centres)
    angle: float  # the yaw offset (degrees) it was found at
    peak: float
    lead: float  # over the runner-up
    sigma_px: float  # the centre's standard deviation, window pixels

    @property
    def confidence(self) -> float:
        """0..1, on the scale of a local-feature match's (core.refine)."""
        return self.peak * min(1.0, self.lead / (2 * LEAD_MIN))


def _gradient(grey: np.ndarray, res: float) -> np.ndarray:
    s = max(0.5, BLUR_M / res)
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), s)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(np.hypot(gx, gy))  # the root: a few strong edges do not outweigh the rest


def _sub(a: float, b: float, c: float) -> float:
    """Sub-pixel offset of a peak b between a and c: the vertex of the parabola through them."""
    d = a - 2 * b + c
    return 0.0 if d >= 0 else 0.5 * (a - c) / d


def _to_template(camera: Camera, size, ground_part, res: float, angle: float):
    """3x3 photo px -> template px (north up, the photo's centre at the template's centre),
    the template's size, or None when it would be too large to correlate."""
    M = photo_view.turned_offsets(camera, size, angle)
    corners = cv2.perspectiveTransform(np.float64(ground_part).reshape(-1, 1, 2), M).reshape(-1, 2)
    half = np.abs(corners).max(0) / res
    tw, th = (int(2 * math.ceil(v) + 1) for v in half)
    if max(tw, th) > MAX_TEMPLATE_PX:
        return None
    S = np.array([[1 / res, 0, (tw - 1) / 2], [0, -1 / res, (th - 1) / 2], [0, 0, 1]])
    return S @ M, (tw, th)


def align(photo_grey: np.ndarray, camera: Camera, ground_part: np.ndarray,
          window_grey: np.ndarray, res: float, centre_px: tuple[float, float],
          radius_px: float, angles: list[float],
          window_valid: np.ndarray | None = None) -> Alignment | None:  # fmt: skip
    """The highest peak over `angles` (yaw offsets, degrees) if it stands clear, or None.
    `centre_px`: where the photo's centre is expected in the window (pixel centres);
    `radius_px`: how far from it."""
    size = (photo_grey.shape[1], photo_grey.shape[0])
    win = _gradient(window_grey, res)
    if window_valid is not None:  # no edge where the imagery ends, no correlation beyond it
        reach = 2 * math.ceil(3 * max(0.5, BLUR_M / res)) + 3
        keep = cv2.erode(window_valid.astype(np.uint8), np.ones((reach, reach), np.uint8))
        win[keep == 0] = 0.0
    part = np.zeros(photo_grey.shape, np.uint8)
    cv2.fillConvexPoly(part, np.int32(np.round(ground_part)), 255)
    best: Alignment | None = None
    for angle in angles:
        made = _to_template(camera, size, ground_part, res, angle)
        if made is None:
            return None
        A, (tw, th) = made
        # Replicated, not black, past the frame: the frame's outline is no edge of the ground.
        tpl = cv2.warpPerspective(photo_grey, A, (tw, th), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        mask = cv2.warpPerspective(part, A, (tw, th), flags=cv2.INTER_NEAREST)
        mask = cv2.erode(mask, np.ones((5, 5), np.uint8))  # no edge at the warp's border
        if mask.sum() < 255 * 0.1 * tw * th:
            continue
        # The search area: template placements whose centre lies within the radius.
        x0 = math.floor(centre_px[0] - radius_px - (tw - 1) / 2)
        y0 = math.floor(centre_px[1] - radius_px - (th - 1) / 2)
        x1 = math.ceil(centre_px[0] + radius_px + (tw - 1) / 2) + 1
        y1 = math.ceil(centre_px[1] + radius_px + (th - 1) / 2) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, win.shape[1]), min(y1, win.shape[0])
        if x1 - x0 <= tw or y1 - y0 <= th:
            continue
        r = cv2.matchTemplate(win[y0:y1, x0:x1], _gradient(tpl, res),
                              cv2.TM_CCOEFF_NORMED, mask=(mask > 0).astype(np.float32))  # fmt: skip
        # Flat stretches (nodata, still water) leave a near-zero variance: no correlation there.
        r = np.nan_to_num(r, nan=-1.0, posinf=-1.0, neginf=-1.0)
        r[np.abs(r) > 1.0 + 1e-4] = -1.0
        j, i = np.unravel_index(int(r.argmax()), r.shape)
        peak = float(r[j, i])
        sep = SEPARATION_M / res
        yy, xx = np.mgrid[: r.shape[0], : r.shape[1]]
        far = np.hypot(xx - i, yy - j) > sep
        # The runner-up is another peak (a local maximum, the map's edge included: a slope that
        # rises out of the map may hide one), not the shoulder of this one.
        k = 2 * math.ceil(sep) + 1
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        others = far & (r >= cv2.dilate(r, disk))
        if not others.any():  # a search area too small to tell a peak from the rest
            continue
        second = float(r[others].max())
        lead = peak - second
        if best is not None and peak <= best.peak:
            continue
        di = _sub(r[j, i - 1], peak, r[j, i + 1]) if 0 < i < r.shape[1] - 1 else 0.0
        dj = _sub(r[j - 1, i], peak, r[j + 1, i]) if 0 < j < r.shape[0] - 1 else 0.0
        half = np.count_nonzero(r >= peak - lead / 2)
        sigma = max(0.5, math.sqrt(half / math.pi) / 2)
        tx, ty = x0 + i + di, y0 + j + dj  # template px (0, 0) in the window
        H = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @ A
        best = Alignment(H, angle, peak, lead, sigma)
    if best is None or best.peak < PEAK_MIN or best.lead < LEAD_MIN:
        return None
    return best


def align_photo(photo: np.ndarray, camera: Camera, ground_part: np.ndarray, window: np.ndarray,
                res: float, centre_px: tuple[float, float], radius_px: float,
                yaw_error_deg: float, yaw_step_deg: float) -> Alignment | None:  # fmt: skip
    """`align` for an RGB photo and window, at yaw offsets across the compass's error."""
    size = (photo.shape[1], photo.shape[0])
    grey = features.grey(photo)
    scale = res / photo_view.photo_resolution(camera, size, res * size[0])
    if scale > 1.5:  # the warp samples the photo: smooth it to the window's resolution first
        grey = cv2.GaussianBlur(grey, (0, 0), 0.5 * scale)
    n = round(yaw_error_deg / yaw_step_deg)
    angles = sorted((k * yaw_step_deg for k in range(-n, n + 1)), key=abs)
    valid = window.max(axis=2) > 0 if window.ndim == 3 else window > 0  # nodata is black
    return align(grey, camera, ground_part, features.grey(window), res, centre_px, radius_px,
                 angles, valid)  # fmt: skip
