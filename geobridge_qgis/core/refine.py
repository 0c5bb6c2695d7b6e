"""Geometric re-ranking and refinement: from "the right area" to "the right spot".

For each of the top candidates, the satellite imagery around it (a window WINDOW_FACTOR times
the chip, read from the indexed raster) is matched to the photo with SIFT features (OpenCV),
Lowe's ratio test and a RANSAC homography (OpenCV's USAC MAGSAC++). Ground is taken as flat, so
a homography maps the photo onto the map exactly for a nadir or oblique view of flat terrain.

Both images are compared at the same ground resolution: the window is read at the raster's own
resolution (coarsened to at most WINDOW_PX pixels), and the photo is scaled so that its width
covers the expected footprint (the altitude prior's, else the candidate's chip size), since SIFT
copes with rotation freely but with large scale gaps poorly. Grey levels are equalised (CLAHE)
on the L channel: photo and satellite differ in season, sensor and sun.

A match is **accepted** when it has at least MIN_INLIERS inliers spread over at least
MIN_SPREAD of the photo, and its footprint is a convex quadrilateral whose area is within a
factor MAX_AREA_RATIO of the expected footprint. Its confidence is
(1 - exp(-inliers / INLIER_SCALE)) * min(1, spread / FULL_SPREAD).

Re-ranking: rank score = cosine + GEO_WEIGHT * confidence + ACCEPTED_BONUS for an accepted
match. With the bonus at 2 (the widest gap two cosines can have) every accepted match goes above
every candidate whose match failed, however much lower its cosine: a homography with enough
well-spread inliers is stronger evidence than an embedding (in the evaluation, accepted matches
put the photo within a few metres). Among accepted ones the stronger geometry, then the
embedding, wins; failed ones keep their retrieval order.

Refinement, from the accepted homography: the photo's footprint on the ground (its four corners),
its centre (where the optical axis meets the ground: the image centre), and its heading (the
bearing of the photo's "up"), each with an uncertainty from refitting the homography on
BOOTSTRAP resamples of the inliers (RMS of the centre's displacement, plus half a window pixel;
standard deviation of the heading).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import tiling
from .camera import Camera
from .errors import UserError

WINDOW_FACTOR = 2.5
WINDOW_PX = 800
PHOTO_MAX_PX = 800
SIFT_FEATURES = 3000
CONTRAST = 0.04  # OpenCV's default
RATIO = 0.8
RANSAC_PX = 4.0
MIN_INLIERS = 15
MIN_SPREAD = 0.05
FULL_SPREAD = 0.25
INLIER_SCALE = 30.0
MAX_AREA_RATIO = 4.0
GEO_WEIGHT = 1.0
ACCEPTED_BONUS = 2.0
BOOTSTRAP = 25


class RasterUnavailable(UserError):
    """The raster the index was built from is not where (or what) the index says."""


@dataclass
class Match:
    """The geometric evidence for one candidate, and what it says about the photo."""

    ok: bool
    reason: str = ""  # why the match failed ("" when accepted)
    matches: int = 0  # ratio-test matches
    inliers: int = 0
    spread: float = 0.0  # inliers' convex hull / photo area
    reprojection_px: float = float("nan")  # RMS of the inliers, window pixels
    confidence: float = 0.0
    x: float = float("nan")  # refined centre, grid CRS
    y: float = float("nan")
    centre_sigma_m: float = float("nan")
    heading_deg: float = float("nan")  # clockwise from north
    heading_sigma_deg: float = float("nan")
    footprint: list[tuple[float, float]] = field(default_factory=list)  # closed ring, grid CRS
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "matches": self.matches,
                "inliers": self.inliers, "spread": round(self.spread, 4),
                "reprojection_px": _round(self.reprojection_px, 3),
                "confidence": round(self.confidence, 4),
                "seconds": round(self.seconds, 3)}  # fmt: skip


def _round(v: float, n: int) -> float | None:
    return None if not math.isfinite(v) else round(v, n)


@dataclass
class PhotoFeatures:
    """SIFT keypoints of the photo at one scale (cached per width and ground resolution)."""

    points: np.ndarray  # [N, 2] in the photo's own pixels (mapped back from any warp)
    descriptors: np.ndarray | None
    width: int  # of the photo as matched (scaled)
    height: int


def _grey(image: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])


def _features(
    image: np.ndarray, upright: bool = False, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoints and descriptors; `upright` describes every keypoint at angle 0 (both
    images north up and at one scale: rotation invariance then only costs distinctiveness)."""
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES, contrastThreshold=CONTRAST)
    grey = _grey(image)
    if mask is not None:  # no keypoints on the edge of a warped photo's empty surround
        mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
    if upright:
        kps = sift.detect(grey, mask)
        for k in kps:
            k.angle = 0.0
        kps, desc = sift.compute(grey, kps)
    else:
        kps, desc = sift.detectAndCompute(grey, mask)
    pts = np.float32([k.pt for k in kps]).reshape(-1, 2)
    return pts, desc


class Matcher:
    """Matches one photo against the indexed raster around candidates."""

    def __init__(self, raster: str, grid_crs, identity: dict | None = None):
        ds = _open_same(raster, identity)
        # Bounds in the grid CRS: a raster in another CRS (a web layer, lon/lat) is warped.
        self.reader = tiling.ChipReader(ds, grid_crs, tiling.raster_bounds(ds, grid_crs))
        self.res = abs(self.reader.gt[1])
        self._photo: np.ndarray | None = None
        self._camera: Camera | None = None
        self._upright = False
        self._cache: dict[tuple[int, float], PhotoFeatures] = {}

    @classmethod
    def for_index(cls, index) -> Matcher:
        """The matcher for an index's own raster; RasterUnavailable when it has moved."""
        ident = index.manifest.get("raster", {})
        return cls(ident.get("source", ""), index.crs, ident)

    def set_photo(self, image: np.ndarray, camera: Camera | None = None) -> None:
        """The photo to match; with its camera (from the metadata: at (0, 0), see
        `priors.Priors.camera`), it is first warped to a map-like view, north up when the
        camera's heading is known."""
        self._photo = image
        self._camera = camera
        self._upright = camera is not None and camera.heading_deg is not None
        self._cache = {}

    def _photo_features(self, metres_per_px: float, footprint_m: float) -> PhotoFeatures:
        assert self._photo is not None, "set_photo first"
        w = self._photo.shape[1]
        target = min(footprint_m / metres_per_px, PHOTO_MAX_PX, w)
        scale = target / w
        key = (round(target), round(metres_per_px, 4))  # the ground warp depends on both
        if key not in self._cache:
            img = self._photo
            if scale < 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            to_photo, matched, mask = np.eye(3), img, None
            if self._camera is not None:
                matched, to_photo, mask = _ortho(img, self._camera, metres_per_px)
            pts, desc = _features(matched, self._upright, mask)
            if len(pts):
                pts = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), to_photo).reshape(-1, 2)
            self._cache[key] = PhotoFeatures(pts, desc, img.shape[1], img.shape[0])
        return self._cache[key]

    def match(self, cx: float, cy: float, chip_m: float, footprint_m: float | None = None) -> Match:
        """Match the photo around (cx, cy) in the grid CRS; chip_m: the candidate's chip size."""
        t0 = time.perf_counter()
        expected = footprint_m or chip_m
        side = WINDOW_FACTOR * max(chip_m, expected)
        px = int(min(WINDOW_PX, math.ceil(side / self.res)))
        res = side / px
        m = self._match(cx, cy, side, px, res, expected)
        m.seconds = time.perf_counter() - t0
        return m

    def _match(self, cx, cy, side, px, res, expected) -> Match:
        window = self.reader.read(cx, cy, side, px)
        if window is None:
            return Match(False, "no imagery around the candidate")
        photo = self._photo_features(res, expected)
        if photo.descriptors is None or len(photo.points) < MIN_INLIERS:
            return Match(False, "the photo has too few features")
        wpts, wdesc = _features(window, self._upright)
        if wdesc is None or len(wpts) < MIN_INLIERS:
            return Match(False, "the satellite window has too few features")
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(photo.descriptors, wdesc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        if len(good) < MIN_INLIERS:
            return Match(False, f"{len(good)} feature matches", matches=len(good))
        src = np.float32([photo.points[g.queryIdx] for g in good])
        dst = np.float32([wpts[g.trainIdx] for g in good])
        H, mask = cv2.findHomography(
            src, dst, cv2.USAC_MAGSAC, RANSAC_PX, maxIters=5000, confidence=0.999
        )
        if H is None:
            return Match(False, "no consistent transform", matches=len(good))
        inl = mask.ravel().astype(bool)
        m = Match(False, matches=len(good), inliers=int(inl.sum()))
        if m.inliers < MIN_INLIERS:
            m.reason = f"{m.inliers} inliers (< {MIN_INLIERS})"
            return m
        hull = cv2.convexHull(src[inl].reshape(-1, 1, 2))
        m.spread = float(cv2.contourArea(hull) / (photo.width * photo.height))
        proj = cv2.perspectiveTransform(src[inl].reshape(-1, 1, 2), H).reshape(-1, 2)
        m.reprojection_px = float(np.sqrt(np.mean(np.sum((proj - dst[inl]) ** 2, axis=1))))
        if m.spread < MIN_SPREAD:
            m.reason = f"inliers cover {m.spread:.0%} of the photo (< {MIN_SPREAD:.0%})"
            return m

        def to_ground(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
            p = cv2.perspectiveTransform(np.float32(pts).reshape(-1, 1, 2), h).reshape(-1, 2)
            return np.column_stack([cx - side / 2 + p[:, 0] * res, cy + side / 2 - p[:, 1] * res])

        w, h = photo.width, photo.height
        corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        ground = to_ground(H, corners)
        if not _plausible(ground, expected):
            m.reason = "implausible footprint (folded, or far off the expected size)"
            return m
        key = np.float32([[w / 2, h / 2], [w / 2, h / 4]])  # centre, and a point "up" of it
        centre, up = to_ground(H, key)
        m.x, m.y = float(centre[0]), float(centre[1])
        m.heading_deg = _bearing(centre, up)
        m.footprint = [(float(a), float(b)) for a, b in [*ground, ground[0]]]  # closed ring
        m.centre_sigma_m, m.heading_sigma_deg = _bootstrap(src[inl], dst[inl], key, to_ground, res)
        m.confidence = (1 - math.exp(-m.inliers / INLIER_SCALE)) * min(1.0, m.spread / FULL_SPREAD)
        m.ok = True
        return m


def _ortho(img: np.ndarray, camera: Camera, res: float):
    """(the photo warped onto the ground at `res` m/px, north up when the heading is known;
    the 3x3 map from the warped image's pixels back to the photo's; the mask of warped pixels)"""
    h, w = img.shape[:2]
    G = camera.image_to_nadir_offsets((w, h), "corners")
    # Keep the ground under the lower 90 % of the frame: the far edge of an oblique view
    # stretches to a few pixels per metre of nothing useful.
    edge = np.float32([[0, 0.1 * h], [w, 0.1 * h], [w, h], [0, h]]).reshape(-1, 1, 2)
    ground = cv2.perspectiveTransform(edge, G).reshape(-1, 2)
    lo, hi = ground.min(0), ground.max(0)
    size = np.ceil((hi - lo) / res).astype(int)
    if size.max() > 4 * PHOTO_MAX_PX or size.min() < 8:
        return img, np.eye(3), None
    to_px = np.array([[1 / res, 0, -lo[0] / res], [0, -1 / res, hi[1] / res], [0, 0, 1]])
    warp = to_px @ G
    dsize = (int(size[0]), int(size[1]))
    out = cv2.warpPerspective(img, warp, dsize, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), warp, dsize, flags=cv2.INTER_NEAREST)
    return out, np.linalg.inv(warp), mask


def _bearing(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360)


def _plausible(quad: np.ndarray, expected_m: float) -> bool:
    if not cv2.isContourConvex(np.float32(quad).reshape(-1, 1, 2)):
        return False
    area = abs(float(cv2.contourArea(np.float32(quad))))
    # A 4:3 photo's footprint is about 0.75 * width^2 at nadir, larger when oblique.
    ratio = area / (0.75 * expected_m**2)
    return 1 / MAX_AREA_RATIO <= ratio <= MAX_AREA_RATIO * 2


def _bootstrap(src, dst, key, to_ground, res) -> tuple[float, float]:
    rng = np.random.default_rng(0)  # fixed: the same photo gives the same uncertainty
    centres, headings = [], []
    n = len(src)
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        h, _ = cv2.findHomography(src[pick], dst[pick], 0)
        if h is None:
            continue
        c, u = to_ground(h, key)
        centres.append(c)
        headings.append(_bearing(c, u))
    if len(centres) < 3:
        return float("nan"), float("nan")
    c = np.array(centres)
    spread = float(np.sqrt(np.mean(np.sum((c - c.mean(0)) ** 2, axis=1))))
    angles = np.radians(headings)
    r = math.hypot(np.mean(np.sin(angles)), np.mean(np.cos(angles)))
    circ_sd = math.degrees(math.sqrt(max(-2 * math.log(max(r, 1e-12)), 0.0)))
    return spread + res / 2, circ_sd


def _open_same(raster: str, identity: dict | None):
    """The raster, checked against what the index recorded of it."""
    if not raster:
        raise RasterUnavailable("the index does not record its raster")
    is_path = not raster.lstrip().startswith("<") and ":" not in raster[2:]
    if is_path and not Path(raster).exists():
        raise RasterUnavailable(f"{raster}: the index's raster is no longer there")
    try:
        ds = tiling.open_raster(raster)
    except UserError as e:
        raise RasterUnavailable(str(e)) from None
    if identity:
        now = tiling.raster_identity(raster, ds)
        for key in ("size", "geotransform", "bytes"):
            if key in identity and identity[key] != now.get(key):
                raise RasterUnavailable(f"{raster}: changed since the index was built ({key})")
    return ds


def rerank(candidates: list, matcher: Matcher, top_n: int, refine: bool = True,
           footprint_m: float | None = None) -> list:  # fmt: skip
    """Candidates re-ranked by geometric evidence (see the module docstring); the first `top_n`
    are matched, the rest keep their retrieval order below them. With `refine`, an accepted
    candidate takes the match's centre, footprint and heading. A matched candidate's `score`
    becomes its rank score (the retrieval cosine stays in `cosine`): what is shown is what
    ordered them."""
    head, tail = candidates[:top_n], candidates[top_n:]
    for c in head:
        m = matcher.match(c.x, c.y, c.size_m, footprint_m)
        c.match = m
        c.method = "reranked"
        c.rank_score = c.cosine + GEO_WEIGHT * m.confidence + (ACCEPTED_BONUS if m.ok else 0.0)
        c.score = c.rank_score
        if m.ok and refine:
            c.method = "refined"
            c.x, c.y, c.footprint = m.x, m.y, m.footprint
            c.heading_deg, c.heading_sigma_deg = m.heading_deg, m.heading_sigma_deg
            c.centre_sigma_m = m.centre_sigma_m
    head.sort(key=lambda c: -c.rank_score)
    out = head + tail
    for r, c in enumerate(out, start=1):
        c.rank = r
    return out
