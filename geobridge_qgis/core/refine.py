"""Geometric re-ranking and refinement: from "the right area" to "the right spot".

For each of the top candidates, the satellite imagery around it is matched to the photo with
local features and a RANSAC homography (OpenCV's USAC MAGSAC++). Ground is taken as flat, so a
homography maps the photo onto the map exactly for a nadir or oblique view of flat terrain.

**The window** holds the photo's ground wherever its centre may be: a square around the
candidate of half-side `radius_m` (how far the centre may lie from it; default anywhere in the
candidate's chip) plus the photo's extent around its centre (from the camera model, turned
through the yaw error; a 4:3 frame of the expected width without a camera). It is read at the
raster's own resolution, or the photo's ground resolution where that is coarser, on the
raster's pixel grid (no resampling shift); past WINDOW_MAX_PX pixels across it is read coarser.

**The photo** is brought to the window's resolution (`photo_view`): scaled, or, with its camera
(altitude and gimbal pitch), warped onto the ground, north up at the metadata's heading, and
cut to the part of the frame that sees usable ground (below the horizon).

**Descriptions** (`features`): SIFT keypoints described as RootSIFT. With a heading, the photo
is described upright at the heading and at offsets across +-YAW_ERROR_DEG in YAW_STEP_DEG steps
(the window upright), each offset one hypothesis; a rotation-invariant description is always
tried too, so a compass that is wrong by any amount narrows the search but never switches a
correct match off. Upright hypotheses are *guided*: each photo keypoint may only match window
keypoints near where the candidate, the camera and that yaw put it (distractors elsewhere in
the window then neither steal nor veto a match); the ratio test looks past keypoints at the
same place. The best accepted hypothesis (most inliers) is kept; one with STRONG_INLIERS ends
the search. `features="alike"` (the default where its weights and ONNX model are at hand: it
finds 3-4 times the inliers of SIFT on real and synthetic pairs): the learned ALIKE detector and
descriptor instead (`learned_matcher`), mutual nearest neighbours (guided the same way), the
photo turned in steps of 15 degrees across the yaw error (all round without a heading).

A match is **accepted** when it has at least MIN_INLIERS inliers spread over at least
MIN_SPREAD of the photo's ground part, and that part's footprint is a convex quadrilateral of
about the area the camera model predicts (within CAMERA_AREA_RATIO; without a camera, within
MAX_AREA_RATIO of a 4:3 frame the expected width). With a camera, a hypothesis whose
homography fails is tried once more as a **similarity** (the ground view is rectified, so it
maps onto the window by a turn and a scale: 2-point samples find a consensus among few matches
that 4-point homography samples miss): at least SIMILAR_INLIERS and SIMILAR_SHARE of the
matches, a scale within SIMILAR_SCALE and a turn within the yaw error, the homography refitted
on its inliers and judged as above at the lower bar. A weak fit (under SHAPE_INLIERS inliers)
must also keep the camera model's footprint shape (within SHAPE_MAX after the best similarity):
a distorted one is a chance consensus or a true place fitted badly. Its confidence is
(1 - exp(-inliers / INLIER_SCALE)) * min(1, spread / FULL_SPREAD). When no description is
accepted, the camera's heading is known and it looks at most DENSE_MAX_TILT_DEG off nadir, the
ground view is aligned **densely** (DENSE,
`dense_align`: correlation of gradients at every shift, accepted on a clear peak): fields and
roads give local features little to hold, and their edges are enough.

Re-ranking: rank score = the candidate's retrieval score (a cosine, pooled over its chips) +
GEO_WEIGHT * confidence + ACCEPTED_BONUS for an accepted match. With the bonus at 2 (the widest
gap two cosines can have; pooling adds log(chips) / logit_scale, a few hundredths) every
accepted match goes above every candidate whose match failed:
geometry put the photo within a few metres in the evaluation, an embedding does not. Among
accepted ones the stronger geometry, then the embedding, wins; failed ones keep their order.

Refinement, from the accepted homography (pixel centres throughout: window pixel p covers
x0 + (p + 0.5) * res, the photo's centre is ((w-1)/2, (h-1)/2)): the footprint of the photo's
ground part, its centre (where the optical axis meets the ground: the image centre), and its
heading (the bearing of the photo's "up"), each with an uncertainty from refitting the
homography on BOOTSTRAP resamples of the inliers. When the centre lies outside the inliers'
hull (an oblique photo matched on its near ground), the homography's perspective terms would
extrapolate it: it is read instead through the camera's rectified view and a least-squares
similarity of the inliers (CENTRE_BY_SIMILARITY), refitted the same way for its uncertainty
(RMS of the centre's displacement, plus half a window pixel; standard deviation of the
heading).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import dense_align, features, fit_geometry, photo_view, tiling
from .camera import Camera
from .errors import UserError
from .match import Match
from .photo_view import PhotoView
from .posterior import SIGMAS

log = logging.getLogger(__name__)

WINDOW_MAX_PX = 1600  # 1600^2 RGB = 7.7 MB, SIFT keeps <= 12,000 keypoints; larger is read coarser
RADIUS_OF_CHIP = math.sqrt(0.5)  # default search radius: the photo's centre is in the chip
YAW_ERROR_DEG = 3 * SIGMAS.yaw_deg  # the error model's 3 sigma of compass and gimbal
YAW_STEP_DEG = 15.0  # upright descriptions tolerate about half of this
RATIO = 0.8
RANSAC_PX = 6.0  # window px; on synthetic photos 0-50 deg, 4 and 8 px accept fewer within 5 m
MIN_INLIERS = 15
STRONG_INLIERS = 45  # an accepted match this strong ends the search over descriptions
MIN_SPREAD = 0.05
FULL_SPREAD = 0.25
INLIER_SCALE = 30.0
MAX_AREA_RATIO = 4.0  # footprint area against a nominal 4:3 frame, without a camera
CAMERA_AREA_RATIO = 2.5  # against the camera model's footprint (altitude, pitch error)
GEO_WEIGHT = 1.0
ACCEPTED_BONUS = 2.0
BOOTSTRAP = 25
FEATURES = ("auto", "sift", "alike")
GUIDED = True  # match only near where the priors put each photo keypoint (see `fit_geometry.guide`)
# Photos whose local features found too little are aligned densely (core.dense_align) when the
# camera's heading is known (it warps the photo north up) and it looks at most DENSE_MAX_TILT_DEG
# off nadir: further out a pitch error of a degree or two stretches the warped ground along the
# view (by 1 / cos^2 of the tilt: 3x nadir's at 55 deg, 8x at 70), no shift of it fits, and
# chance peaks win (on unseen worlds with realistic metadata, every dense top-1 from 61-73 deg
# was 12-77 m off; from 3-49 deg, 7 of 8 within 5 m).
DENSE = True
DENSE_MAX_TILT_DEG = 55.0
# The similarity fallback (`_similar`, with a camera only): its inlier bar (0: off), the share
# of the tentative matches it must hold (below it, in wrong places of repetitive texture
# 8-10 agreeing matches occur by chance among 100+), and how far its scale may be from the
# resolutions' ratio (altitude and pitch errors).
SIMILAR_INLIERS = 8
SIMILAR_SHARE = 0.1
SIMILAR_SCALE = 1.35
# A centre outside the inliers' hull is read through the camera's rectified view and a
# similarity (`fit_geometry.similarity_fitter`): a homography fitted on the near ground
# extrapolates its perspective terms wildly (6-10 m off at 18-42 inliers on oblique
# synthetic photos).
CENTRE_BY_SIMILARITY = True
# A weak fit (fewer than SHAPE_INLIERS inliers) whose footprint, brought onto the camera
# model's by the best similarity, is off by more than SHAPE_MAX of its size (RMS of the
# corners) is distorted: a chance consensus (false accepts measured at 0.27-0.45) or a true
# place fitted badly (0.21-0.36; the similarity fallback then refits it); true fits: <= 0.11.
SHAPE_MAX = 0.2
SHAPE_INLIERS = STRONG_INLIERS


class RasterUnavailable(UserError):
    """The raster the index was built from is not where (or what) the index says."""


@dataclass
class _Window:
    image: np.ndarray
    x0: float  # grid CRS of the window's top-left corner (not a pixel centre)
    y1: float
    res: float
    cache: dict = field(default_factory=dict)

    def to_ground(self, h: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Photo pixels through h (photo -> window pixel centres) to the grid CRS."""
        p = cv2.perspectiveTransform(np.float64(pts).reshape(-1, 1, 2), h).reshape(-1, 2)
        return np.column_stack([self.x0 + (p[:, 0] + 0.5) * self.res,
                                self.y1 - (p[:, 1] + 0.5) * self.res])  # fmt: skip


class Matcher:
    """Matches one photo against the indexed raster around candidates.

    `features`: "auto" (default: "alike" where its weights and ONNX model are at hand, else
    "sift"), "sift", or "alike" (a learned detector and descriptor run with
    onnxruntime, see `learned_matcher`)."""

    def __init__(self, raster: str, grid_crs, identity: dict | None = None, *,
                 features: str = "auto"):  # fmt: skip
        if features not in FEATURES:
            raise UserError(f"features {features!r}: use one of {', '.join(FEATURES)}")
        ds = _open_same(raster, identity)
        # Bounds in the grid CRS: a raster in another CRS (a web layer, lon/lat) is warped.
        self.reader = tiling.ChipReader(ds, grid_crs, tiling.raster_bounds(ds, grid_crs))
        self.res = abs(self.reader.gt[1])
        self._learned = None
        if features in ("auto", "alike"):
            from .learned_matcher import LearnedFeatures

            try:
                self._learned = LearnedFeatures()
                features = "alike"
            except (UserError, ImportError) as e:
                if features == "alike":
                    raise UserError(f"learned features unavailable: {e}") from None
                log.info("matching with SIFT: %s", e)
                features = "sift"
        self.features = features
        self._photo: np.ndarray | None = None
        self._camera: Camera | None = None
        self._views: dict[float, PhotoView] = {}

    @classmethod
    def for_index(cls, index, **kw) -> Matcher:
        """The matcher for an index's own raster; RasterUnavailable when it has moved."""
        ident = index.manifest.get("raster", {})
        return cls(ident.get("source", ""), index.crs, ident, **kw)

    def set_photo(self, image: np.ndarray, camera: Camera | None = None) -> None:
        """The photo to match; with its camera (from the metadata: at (0, 0), see
        `priors.Priors.camera`), it is first warped onto the ground, north up when the
        camera's heading is known."""
        self._photo = image
        self._camera = camera
        self._views = {}

    def _methods(self) -> list[tuple[str, float | None]]:
        """(name, upright angle or None) of each description to try."""
        if self.features == "alike":
            # Not rotation-invariant: the photo turned in steps it tolerates (about +-15 deg).
            if self._camera is not None and self._camera.heading_deg is not None:
                steps = [0.0, -15.0, 15.0, -30.0, 30.0]
            else:
                steps = [float(a) for a in range(0, 360, 30)]
            return [(f"alike{a:+g}", a) for a in steps]
        out: list[tuple[str, float | None]] = []
        if self._camera is not None and self._camera.heading_deg is not None:
            n = round(YAW_ERROR_DEG / YAW_STEP_DEG)
            out = [(f"upright{k * YAW_STEP_DEG:+g}", k * YAW_STEP_DEG)
                   for k in sorted(range(-n, n + 1), key=abs)]  # fmt: skip
        return [*out, ("rotation-invariant", None)]

    def match(self, cx: float, cy: float, chip_m: float, footprint_m: float | None = None, *,
              radius_m: float | None = None) -> Match:  # fmt: skip
        """Match the photo around (cx, cy) in the grid CRS; chip_m: the candidate's chip size;
        radius_m: how far the photo's centre may lie from (cx, cy) (default: anywhere in the
        chip)."""
        assert self._photo is not None, "set_photo first"
        t0 = time.perf_counter()
        expected = footprint_m or chip_m
        radius = chip_m * RADIUS_OF_CHIP if radius_m is None else radius_m
        size = (self._photo.shape[1], self._photo.shape[0])
        res = max(self.res, photo_view.photo_resolution(self._camera, size, expected))
        ex, ey = photo_view.extent_m(self._camera, size, expected, YAW_ERROR_DEG)
        self._centre = (cx, cy, radius)
        window = self._read(cx, cy, radius + ex, radius + ey, res)
        if window is None:
            return Match(False, "no imagery around the candidate")
        view = self._view(window.res, expected)
        best: Match | None = None
        for name, angle in self._methods():
            m = self._try(view, window, name, angle, expected)
            if best is None or (m.ok, m.inliers) > (best.ok, best.inliers):
                best = m
            if best.ok and best.inliers >= STRONG_INLIERS:
                break
        assert best is not None
        if (
            not best.ok
            and DENSE
            and self._camera is not None
            and self._camera.heading_deg is not None
            and self._camera.tilt_deg <= DENSE_MAX_TILT_DEG
        ):
            best = self._dense(window, view, radius) or best
        best.seconds = time.perf_counter() - t0
        return best

    def _dense(self, window: _Window, view: PhotoView, radius: float) -> Match | None:
        """The photo's ground part aligned by correlation (core.dense_align), for photos whose
        local features found too little; None when no peak stands clear."""
        cx, cy, _ = self._centre
        centre = ((cx - window.x0) / window.res - 0.5, (window.y1 - cy) / window.res - 0.5)
        a = dense_align.align_photo(self._photo, self._camera, view.ground_part, window.image,
                                    window.res, centre, radius / window.res,
                                    YAW_ERROR_DEG, YAW_STEP_DEG)  # fmt: skip
        if a is None:
            return None
        m = Match(True, method=f"dense{a.angle:+g}", spread=1.0, confidence=a.confidence,
                  correlation=a.peak)  # fmt: skip
        size = (self._photo.shape[1], self._photo.shape[0])
        centre_xy, up = window.to_ground(a.H, _key_points(size))
        m.x, m.y = float(centre_xy[0]), float(centre_xy[1])
        m.heading_deg = fit_geometry.bearing(centre_xy, up)
        m.centre_sigma_m, m.heading_sigma_deg = a.sigma_px * window.res, YAW_STEP_DEG / 2
        ground = window.to_ground(a.H, view.ground_part)
        m.footprint = [(float(x), float(y)) for x, y in [*ground, ground[0]]]
        return m

    def _read(self, cx, cy, half_x, half_y, res) -> _Window | None:
        """The window, its corner on the raster's pixel grid so that no resampling shifts it."""
        half = max(half_x, half_y)  # ChipReader reads squares
        px = math.ceil(2 * half / res)
        if px > WINDOW_MAX_PX:
            px, res = WINDOW_MAX_PX, 2 * half / WINDOW_MAX_PX
        side = px * res
        gt = self.reader.gt
        k = round((cx - side / 2 - gt[0]) / gt[1])
        x0 = gt[0] + k * gt[1]
        side_px = side / gt[1]
        if abs(side_px - round(side_px)) > 1e-6:  # a whole number of raster pixels
            side = math.ceil(side_px) * gt[1]
            res = side / px
        j = round((cy + side / 2 - gt[3]) / gt[5])
        y1 = gt[3] + j * gt[5]
        img = self.reader.read(x0 + side / 2, y1 - side / 2, side, px)
        return None if img is None else _Window(img, x0, y1, res)

    def _view(self, res: float, expected: float) -> PhotoView:
        key = round(res, 4)
        if key not in self._views:
            self._views = {key: photo_view.make_view(self._photo, self._camera, res, expected)}
        return self._views[key]

    def _described(self, holder, image, mask, name: str, wanted: dict):
        """Keypoints described one way (`name`), cached on the view or window; SIFT describes
        all the `wanted` ways ({name: upright angle or None}) at once."""
        if name not in holder.cache:
            if name.startswith("alike"):
                holder.cache[name] = self._learned.describe(image, mask, wanted.get(name) or 0.0)
            else:
                g = features.grey(image)
                kps = features.detect(g, mask)
                names = [n for n in wanted if n not in holder.cache]
                done = features.describe(g, kps, [wanted[n] for n in names])
                holder.cache.update(zip(names, done, strict=True))
        return holder.cache[name]

    def _try(self, view: PhotoView, window: _Window, name: str, angle, expected) -> Match:
        methods = dict(self._methods())
        p = self._described(view, view.image, view.mask, name, methods)
        if name.startswith("alike"):
            w = self._described(window, window.image, None, "alike+0", {"alike+0": 0.0})
            return self._pair(p, w, name, view, window, expected, angle)
        wname = "upright+0" if angle is not None else name
        wanted = {"upright+0": 0.0} if len(methods) > 1 else {}
        wanted.setdefault(name, None)
        if "rotation-invariant" in methods:
            wanted["rotation-invariant"] = None
        w = self._described(window, window.image, None, wname, wanted)
        return self._pair(p, w, name, view, window, expected, angle)

    def _pair(self, p, w, name, view, window, expected, angle=None) -> Match:
        m = Match(False, method=name)
        if len(p.points) < MIN_INLIERS:
            m.reason = "the photo has too few features"
            return m
        if len(w.points) < MIN_INLIERS:
            m.reason = "the satellite window has too few features"
            return m
        guided = (GUIDED and angle is not None and self._camera is not None
                  and self._camera.heading_deg is not None)  # fmt: skip
        ratio = None if name.startswith("alike") else RATIO
        if guided:
            corner = (window.x0, window.y1, window.res)
            pred, reach = fit_geometry.guide(self._camera, self._photo.shape, p.points,
                                             view.to_photo, self._centre, angle, corner,
                                             YAW_STEP_DEG)  # fmt: skip
            qi, ti = features.guided_matches(p, w, pred, reach, ratio)
        elif ratio is None:
            qi, ti = features.mutual_matches(p, w)
        else:
            qi, ti = features.ratio_matches(p, w, RATIO)
        m.matches = len(qi)
        if len(qi) < MIN_INLIERS:
            m.reason = f"{len(qi)} feature matches"
            return m
        src = cv2.perspectiveTransform(p.points[qi].reshape(-1, 1, 2).astype(np.float64),
                                       view.to_photo).reshape(-1, 2).astype(np.float32)  # fmt: skip
        dst = w.points[ti]
        H, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, RANSAC_PX, maxIters=5000,
                                     confidence=0.999)  # fmt: skip
        if H is None:  # few matches, mostly wrong: the similarity below may still find them
            m.reason, out = "no consistent transform", m
        else:
            out = self._judge(m, H, src, dst, mask.ravel().astype(bool), view, window, expected)
        if out.ok or not SIMILAR_INLIERS or self._camera is None:
            return out
        sim = self._similar(p.points[qi], src, dst, view, window)
        if sim is None:
            return out
        H, inl = sim
        m2 = Match(False, method=name + "~similar", matches=len(qi))
        m2 = self._judge(m2, H, src, dst, inl, view, window, expected, SIMILAR_INLIERS)
        return m2 if m2.ok else out

    def _similar(self, pv, src, dst, view, window):
        """The photo's ground view is rectified by the camera: it should map onto the window by
        a similarity (a turn within the yaw error when there is a compass, a scale near the
        resolutions' ratio). RANSAC on 2-point samples finds a consensus a full homography (4
        points) misses among few matches; the homography is refitted on its inliers.
        (H photo -> window, inliers) or None."""
        A, sm = cv2.estimateAffinePartial2D(pv.astype(np.float32), dst, method=cv2.RANSAC,
                                            ransacReprojThreshold=RANSAC_PX, maxIters=5000,
                                            confidence=0.999)  # fmt: skip
        if A is None or int(sm.sum()) < max(SIMILAR_INLIERS, SIMILAR_SHARE * len(pv)):
            return None
        scale = math.hypot(A[0, 0], A[1, 0]) * window.res / view.res
        turn = math.degrees(math.atan2(A[1, 0], A[0, 0]))
        turned = self._camera.heading_deg is not None and abs(turn) > YAW_ERROR_DEG + 5  # compass
        if not 1 / SIMILAR_SCALE <= scale <= SIMILAR_SCALE or turned:
            return None
        sin = sm.ravel().astype(bool)
        H, _ = cv2.findHomography(src[sin], dst[sin], 0)
        if H is None:
            return None
        proj = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), H)
        err = np.linalg.norm(proj.reshape(-1, 2) - dst, axis=1)
        return H, err < RANSAC_PX

    def _judge(self, m, H, src, dst, inl, view, window, expected, bar=None) -> Match:
        bar = bar or MIN_INLIERS
        m.inliers = int(inl.sum())
        if m.inliers < bar:
            m.reason = f"{m.inliers} inliers (< {bar})"
            return m
        hull = cv2.convexHull(src[inl].reshape(-1, 1, 2))
        part_area = abs(float(cv2.contourArea(np.float32(view.ground_part))))
        m.spread = float(cv2.contourArea(hull) / max(part_area, 1.0))
        proj = cv2.perspectiveTransform(src[inl].reshape(-1, 1, 2), H).reshape(-1, 2)
        m.reprojection_px = float(np.sqrt(np.mean(np.sum((proj - dst[inl]) ** 2, axis=1))))
        if m.spread < MIN_SPREAD:
            m.reason = f"inliers cover {m.spread:.0%} of the photo (< {MIN_SPREAD:.0%})"
            return m
        size = (self._photo.shape[1], self._photo.shape[0])
        ground = window.to_ground(H, view.ground_part)
        limits = (MAX_AREA_RATIO, CAMERA_AREA_RATIO)
        if not fit_geometry.plausible(self._camera, ground, size, expected, *limits):
            m.reason = "implausible footprint (folded, or far off the expected size)"
            return m
        if (
            SHAPE_MAX
            and m.inliers < SHAPE_INLIERS
            and fit_geometry.shape_error(self._camera, size, ground) > SHAPE_MAX
        ):
            m.reason = "footprint's shape unlike the camera's (a distorted fit)"
            return m
        key = _key_points(size)
        fit = fit_geometry.fit_homography
        hull = cv2.convexHull(np.float32(src[inl]).reshape(-1, 1, 2))
        outside = cv2.pointPolygonTest(hull, (float(key[0, 0]), float(key[0, 1])), False) < 0
        if CENTRE_BY_SIMILARITY and self._camera is not None and outside:
            fit = fit_geometry.similarity_fitter(view.to_photo)
            H = fit(src[inl], dst[inl])
        centre, up = window.to_ground(H, key)
        m.x, m.y = float(centre[0]), float(centre[1])
        m.heading_deg = fit_geometry.bearing(centre, up)
        m.footprint = [(float(a), float(b)) for a, b in [*ground, ground[0]]]  # closed ring
        m.centre_sigma_m, m.heading_sigma_deg = fit_geometry.bootstrap(
            src[inl], dst[inl], key, window.to_ground, window.res, BOOTSTRAP, fit
        )
        m.confidence = (1 - math.exp(-m.inliers / INLIER_SCALE)) * min(1.0, m.spread / FULL_SPREAD)
        m.ok = True
        return m


def _key_points(size: tuple[int, int]) -> np.ndarray:
    """The photo's centre and a point above it (pixel centres): position and heading."""
    w, h = size
    return np.float64([[(w - 1) / 2, (h - 1) / 2], [(w - 1) / 2, (h - 1) / 2 - h / 4]])


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
           footprint_m: float | None = None, radius_m: float | None = None) -> list:  # fmt: skip
    """Candidates re-ranked by geometric evidence (see the module docstring); the first `top_n`
    are matched, the rest keep their retrieval order below them. With `refine`, an accepted
    candidate takes the match's centre, footprint and heading. A matched candidate's `score`
    becomes its rank score (its retrieval score, `retrieval_score`, plus the match's evidence;
    the seed chip's cosine stays in `cosine`): what is shown is what ordered them."""
    head, tail = candidates[:top_n], candidates[top_n:]
    for c in head:
        m = matcher.match(c.x, c.y, c.size_m, footprint_m, radius_m=radius_m)
        c.match = m
        c.method = "reranked"
        bonus = ACCEPTED_BONUS if m.ok else 0.0
        c.rank_score = c.retrieval_score + GEO_WEIGHT * m.confidence + bonus
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
