"""Drone photos of a `World` through the pinhole camera (`geobridge_qgis.core.camera`).

`render_drone` returns the photo and its footprint: the four image corners ray-cast to z = 0 in
the order top-left, top-right, bottom-right, bottom-left (for heading 0 and tilt 0: NW, NE, SE,
SW, i.e. clockwise on the map). `Camera.centre_ground()` is the true centre, the ground point
seen at the image centre (the principal point). The ground is the ortho texture of the world
warped through the ground-plane homography (mip-mapped: each pixel samples the texture level
closest to its own ground resolution); buildings (walls, two-tone gable roofs) and single trees
are then drawn in 3D, far to near (`solids.py`), so walls show and tall things lean and occlude
when oblique (forest and hedge canopies stay in the ground texture: flat crowns with their
shadows). At tilt 0 and heading 0 a photo is, up to scale, style, noise and the lean of tall
things, the satellite crop of its footprint (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely.geometry import Polygon

from geobridge_qgis.core.camera import Camera

from ..world import World
from .ortho import render_ortho
from .solids import draw_solids
from .style import Style, apply_finish


@dataclass
class Texture:
    """A ground texture (no roofs, no single-tree crowns) with its mip levels: level k has
    pixel size gsd * 2**k; pixel (i, j) of level k is centred on
    (x0 + (j + 0.5) * gsd_k, y1 - (i + 0.5) * gsd_k)."""

    levels: list[np.ndarray]
    x0: float
    y1: float
    gsd: float
    style: Style
    bounds: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))


def render_texture(
    world: World, style: Style, gsd: float, bounds: tuple[float, float, float, float] | None = None
) -> Texture:
    """The drone ground texture of a window (default: the whole world) with mip levels.
    Pre-render one per style to render many views fast."""
    b = tuple(float(v) for v in (bounds or world.bounds))
    img = render_ortho(world, gsd, style, b, objects=False, finish=False)
    levels = [img]
    while min(levels[-1].shape[:2]) >= 32 and len(levels) < 7:
        h, w = levels[-1].shape[:2]
        h2, w2 = h // 2, w // 2
        levels.append(
            cv2.resize(levels[-1][: h2 * 2, : w2 * 2], (w2, h2), interpolation=cv2.INTER_AREA)
        )
    y1 = b[1] + img.shape[0] * gsd
    return Texture(levels, b[0], y1, float(gsd), style, b)


def render_drone(
    world: World,
    camera: Camera,
    style: Style,
    size: tuple[int, int] = (640, 480),
    texture: Texture | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, Polygon]:
    """A drone photo (uint8, H x W x 3, size = (W, H)) and its ground footprint (UTM polygon,
    corners top-left, top-right, bottom-right, bottom-left).

    `texture`: a pre-rendered `render_texture` of this world and style (fast path for
    training); without one, a local texture of the footprint is rendered at the photo's own
    ground resolution (sharper, ~0.1-0.5 s). Ground outside the texture repeats its edge."""
    far = None
    if reaches_horizon(camera, size, FAR_RANGE_M):
        fp, far = visible_footprint(camera, size, FAR_RANGE_M), FAR_RANGE_M
    else:
        fp = camera.footprint(size)
    if texture is None:
        texture = _local_texture(world, camera, style, size, fp)
    img = _warp_ground(texture, camera, size)
    draw_solids(img, world, camera, style, size, fp)
    if far is not None:
        _sky_and_haze(img, world, camera, style, size, far)
    noise_rng = rng or np.random.default_rng([style.seed, 2])
    return apply_finish(img, style, noise_rng, vignette=True), Polygon(fp)


# Near the horizon the ground runs to infinity: the renderer draws it up to FAR_RANGE_M (and
# inside the world), fades it into haze from HAZE_FROM of that range, and paints the rest sky.
FAR_RANGE_M = 500.0
HAZE_FROM = 0.6


def _ground_distance(camera: Camera, uv: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal distance from below the camera to where each pixel's ray meets the ground,
    inf above the horizon; the rays' horizontal unit directions)."""
    k_inv = np.linalg.inv(camera.intrinsics(size))
    rays = np.c_[uv, np.ones(len(uv))] @ k_inv.T @ camera.rotation()  # world east, north, up
    horiz = np.hypot(rays[:, 0], rays[:, 1])
    down = -rays[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(down > 1e-9, camera.altitude_m * horiz / down, np.inf)
        unit = rays[:, :2] / np.maximum(horiz, 1e-12)[:, None]
    return dist, unit


def _border(size, n: int = 24) -> np.ndarray:
    w, h = size
    t = np.linspace(0.0, 1.0, n, endpoint=False)
    xs, ys = -0.5 + t * w, -0.5 + t * h
    return np.concatenate([
        np.c_[xs, np.full(n, -0.5)], np.c_[np.full(n, w - 0.5), ys],
        np.c_[xs[::-1] + w / n, np.full(n, h - 0.5)], np.c_[np.full(n, -0.5), ys[::-1] + h / n],
    ])  # fmt: skip


def reaches_horizon(camera: Camera, size, far_m: float) -> bool:
    """Whether some of the frame sees the ground beyond far_m, or the sky."""
    dist, _ = _ground_distance(camera, _border(size, 4), size)
    return bool((dist > far_m).any())


def visible_footprint(camera: Camera, size, far_m: float) -> np.ndarray:
    """The ground the frame shows within far_m of the point below the camera: the frame's
    border ray-cast to the ground, rays beyond far_m (or above the horizon) stopped there."""
    dist, unit = _ground_distance(camera, _border(size), size)
    d = np.minimum(dist, far_m)
    pts = np.c_[camera.x + unit[:, 0] * d, camera.y + unit[:, 1] * d]
    keep = np.r_[True, np.any(np.abs(np.diff(pts, axis=0)) > 1e-6, axis=1)]
    return pts[keep]


def _sky_and_haze(img: np.ndarray, world: World, camera: Camera, style: Style, size, far: float):
    w, h = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    dist, unit = _ground_distance(camera, np.c_[u.ravel(), v.ravel()], size)
    gx = camera.x + unit[:, 0] * np.where(np.isfinite(dist), dist, 0.0)
    gy = camera.y + unit[:, 1] * np.where(np.isfinite(dist), dist, 0.0)
    xmin, ymin, xmax, ymax = world.bounds
    outside = (gx < xmin) | (gx > xmax) | (gy < ymin) | (gy > ymax) | (dist > far)
    fog = np.clip((dist - HAZE_FROM * far) / ((1 - HAZE_FROM) * far), 0.0, 1.0)
    fog = np.where(outside, 1.0, fog).reshape(h, w, 1)
    haze = np.asarray(style.haze_colour, np.float32)
    sky = haze * 1.04
    up = (v / max(h - 1, 1)).reshape(h, w, 1)
    sky_col = np.clip(sky - 30.0 * (1.0 - up), 0, 255)
    above = ~np.isfinite(dist).reshape(h, w)
    out = img.astype(np.float32) * (1 - fog) + haze * fog
    out[above] = sky_col[above]
    img[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _local_texture(world: World, camera: Camera, style: Style, size, fp: np.ndarray) -> Texture:
    w, h = size
    probe = np.array([[w / 2 - 0.5, h - 1.0], [w / 2 - 0.5, h / 2 - 0.5], [0.0, h - 1.0]])
    res = float(camera.ground_resolution(probe, size).min())
    gsd = float(np.clip(res, 0.06, 4.0))
    x0, y0 = fp.min(axis=0) - 3.0 * gsd - 1.0
    x1, y1 = fp.max(axis=0) + 3.0 * gsd + 1.0
    area = (x1 - x0) * (y1 - y0)
    if area / gsd**2 > 9e6:
        gsd = math.sqrt(area / 9e6)
    # Snap the window to the gsd grid of the world (so pixels agree with other renders).
    wx0, wy0 = world.bounds[0], world.bounds[1]
    x0 = wx0 + math.floor((x0 - wx0) / gsd) * gsd
    y0 = wy0 + math.floor((y0 - wy0) / gsd) * gsd
    x1 = x0 + math.ceil((x1 - x0) / gsd) * gsd
    y1 = y0 + math.ceil((y1 - y0) / gsd) * gsd
    return render_texture(world, style, gsd, (x0, y0, x1, y1))


def _warp_ground(tex: Texture, camera: Camera, size) -> np.ndarray:
    """Mip-mapped perspective warp of the texture: trilinear between the two texture levels
    nearest each pixel's ground resolution."""
    w, h = size
    hinv = np.linalg.inv(camera.ground_homography(size))
    # Level map on a coarse grid, then upsampled.
    gu, gv = np.meshgrid(np.linspace(-0.5, w - 0.5, 9), np.linspace(-0.5, h - 0.5, 7))
    res = camera.ground_resolution(np.c_[gu.ravel(), gv.ravel()], size).reshape(gu.shape)
    lvl = np.log2(np.maximum(np.nan_to_num(res, nan=1e6, posinf=1e6), 1e-6) / tex.gsd)
    lvl = np.clip(lvl, 0.0, len(tex.levels) - 1.0).astype(np.float32)
    lo, hi = math.floor(float(lvl.min())), math.ceil(float(lvl.max()))
    out = None
    lvl_full = None
    if hi > lo:
        lvl_full = cv2.resize(lvl, (w, h), interpolation=cv2.INTER_LINEAR)
    for k in range(lo, hi + 1):
        warped = _warp_level(tex, k, hinv, size)
        if lvl_full is None:
            return warped
        wk = np.clip(1.0 - np.abs(lvl_full - k), 0.0, 1.0)[..., None]
        part = warped.astype(np.float32) * wk
        out = part if out is None else out + part
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _warp_level(tex: Texture, k: int, hinv: np.ndarray, size) -> np.ndarray:
    g = tex.gsd * 2**k
    level = tex.levels[k]
    # image pixel -> ground (hinv) -> texture pixel of level k
    a_inv = np.array([[1 / g, 0, -tex.x0 / g - 0.5], [0, -1 / g, tex.y1 / g - 0.5], [0, 0, 1.0]])
    m = a_inv @ hinv
    # Crop the level to what the view needs (cv2's remap works in 16-bit coordinates).
    w, h = size
    corners = np.array([[-1, -1, 1], [w, -1, 1], [w, h, 1], [-1, h, 1]], dtype=np.float64)
    tp = corners @ m.T
    tp = tp[:, :2] / tp[:, 2:3]
    c0 = int(np.clip(math.floor(tp[:, 0].min()) - 2, 0, level.shape[1] - 1))
    r0 = int(np.clip(math.floor(tp[:, 1].min()) - 2, 0, level.shape[0] - 1))
    c1 = int(np.clip(math.ceil(tp[:, 0].max()) + 3, c0 + 1, level.shape[1]))
    r1 = int(np.clip(math.ceil(tp[:, 1].max()) + 3, r0 + 1, level.shape[0]))
    crop = level[r0:r1, c0:c1]
    m = np.array([[1, 0, -c0], [0, 1, -r0], [0, 0, 1.0]]) @ m
    return cv2.warpPerspective(
        crop,
        m,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
