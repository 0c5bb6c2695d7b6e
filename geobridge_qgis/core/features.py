"""Local features for the refiner: SIFT keypoints (OpenCV) described as RootSIFT, and the
tentative matches between two sets of them.

A **description** is one way of describing the keypoints of an image: rotation-invariant (each
keypoint at its own dominant orientation, as SIFT finds them), or *upright* at a fixed angle
(every keypoint described in one frame: when both images are north up and at one scale this is
more distinctive, since orientation estimates are noisy). A yaw prior is used by describing the
photo upright at several angles across its error range and the satellite window upright at 0:
each angle is one hypothesis the refiner tries, next to the rotation-invariant one, so a wrong
compass narrows nothing away.

SIFT returns one location several times when it has several dominant orientations (a quarter
to a third of its keypoints). Described upright, the copies carry identical descriptors, which
tie in Lowe's ratio test and so reject each other: upright keypoints are deduplicated first, and
the ratio test looks past neighbours at the same location as the nearest.

RootSIFT (Arandjelovic & Zisserman 2012): each descriptor L1-normalised, then square-rooted, so
Euclidean distance compares them by the Hellinger kernel; it is measured to match better.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIFT_PER_MPX = 6000  # keypoints kept per million pixels (an image's share of SIFT_MAX)
SIFT_MIN = 1500
SIFT_MAX = 12000
CONTRAST = 0.03  # OpenCV's default is 0.04: aerial imagery is soft, keep fainter blobs
SAME_PLACE_PX = 0.5  # keypoints closer than this are one location
ROOT_SIFT = True


@dataclass
class Described:
    """Keypoints of an image described one way (see the module docstring)."""

    points: np.ndarray  # [N, 2] float32, pixel centres of the image described
    desc: np.ndarray  # [N, D] float32


def grey(image: np.ndarray) -> np.ndarray:
    """Lightness equalised (CLAHE): photo and satellite differ in season, sensor and sun."""
    if image.ndim == 2:
        lum = image
    else:
        lum = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[:, :, 0]
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lum)


def detect(grey_img: np.ndarray, mask: np.ndarray | None = None) -> list:
    """SIFT keypoints, as many as the image's area warrants (a window larger than the photo
    needs proportionally more to hold the photo's share)."""
    n = int(np.clip(SIFT_PER_MPX * grey_img.size / 1e6, SIFT_MIN, SIFT_MAX))
    sift = cv2.SIFT_create(nfeatures=n, contrastThreshold=CONTRAST)
    if mask is not None:  # no keypoints on the edge of a warped photo's empty surround
        mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
    return list(sift.detect(grey_img, mask))


def dedupe(kps: list) -> list:
    """One keypoint per location (the strongest)."""
    best: dict[tuple[int, int], cv2.KeyPoint] = {}
    for k in kps:
        key = (round(k.pt[0] / SAME_PLACE_PX), round(k.pt[1] / SAME_PLACE_PX))
        if key not in best or k.response > best[key].response:
            best[key] = k
    return list(best.values())


def describe(grey_img: np.ndarray, kps: list, angles: list[float | None],
             root: bool | None = None) -> list[Described]:  # fmt: skip
    """Descriptors of `kps` for each of `angles`: rotation-invariant (None) or upright at that
    many degrees. One SIFT compute for all of them (each call builds the image's scale space
    again, which costs more than describing the keypoints)."""
    sift = cv2.SIFT_create()
    upright = dedupe(kps) if any(a is not None for a in angles) else []
    todo = []
    for g, a in enumerate(angles):
        src = kps if a is None else upright
        for k in src:
            todo.append(cv2.KeyPoint(k.pt[0], k.pt[1], k.size, k.angle if a is None
                                     else float(a) % 360, k.response, k.octave, g))  # fmt: skip
    empty = Described(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    if not todo:
        return [empty for _ in angles]
    done, desc = sift.compute(grey_img, todo)
    if desc is None:
        return [empty for _ in angles]
    desc = desc.astype(np.float32)
    if ROOT_SIFT if root is None else root:
        desc /= np.maximum(desc.sum(1, keepdims=True), 1e-7)
        desc = np.sqrt(desc)
    pts = np.float32([k.pt for k in done]).reshape(-1, 2)
    group = np.array([k.class_id for k in done])
    return [Described(pts[group == g], desc[group == g]) for g in range(len(angles))]


def ratio_matches(a: Described, b: Described, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices into a, indices into b) passing Lowe's ratio test, the second neighbour taken
    as the nearest one at another location than the first."""
    if len(a.desc) == 0 or len(b.desc) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    k = min(3, len(b.desc))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.desc, b.desc, k=k)
    qi, ti = [], []
    for p in pairs:
        if len(p) < 2:
            continue
        first = p[0]
        where = b.points[first.trainIdx]
        second = next(
            (m for m in p[1:] if np.abs(b.points[m.trainIdx] - where).max() > SAME_PLACE_PX), None
        )
        if second is None or first.distance < ratio * second.distance:
            qi.append(first.queryIdx)
            ti.append(first.trainIdx)
    return np.asarray(qi, int), np.asarray(ti, int)


def mutual_matches(a: Described, b: Described, max_dist: float | None = None):
    """(indices into a, indices into b) that are each other's nearest neighbour."""
    if len(a.desc) == 0 or len(b.desc) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    ab = np.array([m[0].trainIdx for m in bf.knnMatch(a.desc, b.desc, k=1)])
    ba = np.array([m[0].trainIdx for m in bf.knnMatch(b.desc, a.desc, k=1)])
    qi = np.nonzero(ba[ab] == np.arange(len(ab)))[0]
    ti = ab[qi]
    if max_dist is not None:
        d = np.linalg.norm(a.desc[qi] - b.desc[ti], axis=1)
        qi, ti = qi[d < max_dist], ti[d < max_dist]
    return qi, ti


def guided_matches(
    a: Described, b: Described, pred: np.ndarray, reach: np.ndarray, ratio: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Matches where each keypoint of `a` may only match keypoints of `b` within reach[i]
    pixels of pred[i] (its place in b as the priors predict it): with `ratio`, Lowe's ratio
    test among those (the second neighbour at another location than the first); without,
    mutual nearest neighbours among those. Distractors elsewhere in a large window then
    neither steal a match nor veto it."""
    if len(a.desc) == 0 or len(b.desc) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    n = len(a.desc)
    first = np.zeros(n, int)
    d1 = np.full(n, np.inf, np.float32)  # squared distances
    d2 = np.full(n, np.inf, np.float32)
    col_best = np.full(len(b.desc), np.inf, np.float32)
    col_arg = np.full(len(b.desc), -1)
    _, place = np.unique(np.round(b.points / SAME_PLACE_PX), axis=0, return_inverse=True)
    place = place.ravel()
    bb = (b.desc**2).sum(1)
    bx, by = b.points[:, 0], b.points[:, 1]
    rows = 512  # of `a` at a time: bounded memory
    for r0 in range(0, n, rows):
        sl = slice(r0, r0 + rows)
        dist = (a.desc[sl] ** 2).sum(1)[:, None] + bb[None] - 2 * (a.desc[sl] @ b.desc.T)
        far = (pred[sl, 0, None] - bx[None]) ** 2 + (pred[sl, 1, None] - by[None]) ** 2
        dist[far > (reach[sl] ** 2)[:, None]] = np.inf
        idx = np.arange(dist.shape[0])
        j = dist.argmin(1)
        first[sl], d1[sl] = j, dist[idx, j]
        cmin = dist.min(0)
        better = cmin < col_best
        col_best[better] = cmin[better]
        col_arg[better] = r0 + dist.argmin(0)[better]
        dist[place[None, :] == place[j][:, None]] = np.inf
        d2[sl] = dist.min(1)
    ok = np.isfinite(d1)
    if ratio is not None:
        ok &= d1 < ratio**2 * d2
    else:
        ok &= col_arg[first] == np.arange(n)
    qi = np.nonzero(ok)[0]
    return qi, first[qi]
