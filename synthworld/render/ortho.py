"""North-up orthos of a `World`: the satellite image, and the ground texture of drone photos.

`render_ortho` draws a north-up raster covering `bounds` (default: the world) at `gsd` metres
per pixel; row 0 is the northern edge (ymax), column 0 the western edge (xmin), so pixel (i, j)
covers x in [xmin + j*gsd, xmin + (j+1)*gsd], exactly as a GeoTIFF with geotransform
(xmin, gsd, 0, ymax, 0, -gsd). Everything procedural (ground noise, crop stripes, forest crowns)
is a function of world coordinates, so any window renders the same pixels as the whole world
(this is what lets drone photos use small local renders, and the satellite be written in tiles).
Layers are painted bottom-up: ground, surfaces, fields, forest floor, water, roads, car parks,
pitches, markings, cars, then shadows, canopy, roofs and single trees.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import shapely

from ..world import Building, Canopy, Field, World
from .canvas import Canvas, sample_noise
from .style import CAR_RGB, Style, apply_finish, position_tone


def render_ortho(
    world: World,
    gsd: float,
    style: Style,
    bounds: tuple[float, float, float, float] | None = None,
    objects: bool = True,
    finish: bool = True,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A north-up image (uint8, H x W x 3) of `bounds` (default: the whole world) at `gsd`.

    objects=False leaves out roofs and single-tree crowns (their shadows stay): the ground
    texture for drone photos, where those are drawn standing in 3D. finish=False skips the
    style's colour finish, blur and noise (textures get them per photo instead)."""
    cv = Canvas(bounds or world.bounds, gsd)
    if cv.w <= 0 or cv.h <= 0:
        raise ValueError(f"empty window {bounds} at gsd {gsd}")
    q = cv.query_box(30.0)
    coarse, fine = sample_noise(world, cv)
    _base(cv, style, coarse, fine)
    for s in world.query("surfaces", q):
        cv.fill(s.polygon, style.colour(s.kind, s.tone, 0.22))
    fields = world.query("fields", q)
    _fields(cv, style, fields, coarse)
    for f in world.query("forests", q):
        cv.fill(f.polygon, style.colour("forest_floor"))
    _water(cv, world, style, q)
    _roads(cv, world, style, q)
    _parkings(cv, world, style, q)
    _sports(cv, world, style, q)
    _apply_thin(cv, style)
    _cars(cv, world, style, q)
    canopy = _canopy_in(world, q)
    trees = world.query("trees", q)
    buildings = world.query("buildings", q)
    _shadows(cv, style, buildings, trees, canopy)
    _draw_canopy(cv, style, canopy)
    if objects:
        _roofs(cv, style, buildings)
        _tree_crowns(cv, style, trees)
    if not finish:
        return cv.img
    return apply_finish(cv.img, style, rng or np.random.default_rng([style.seed, 1]))


def _base(cv: Canvas, style: Style, coarse: np.ndarray, fine: np.ndarray) -> None:
    """Meadow ground: two grass colours mixed by world-fixed coarse noise, with fine grain."""
    a = style.colour("grass_a")
    d = style.colour("grass_b") - a
    for r0 in range(0, cv.h, 512):
        mix = np.clip(coarse[r0 : r0 + 512] * np.float32(0.35) + np.float32(0.5), 0.0, 1.0)
        grain = fine[r0 : r0 + 512] * np.float32(0.05) + np.float32(1.0)
        mg = mix * grain
        chans = [
            cv2.addWeighted(grain, float(a[c]), mg, float(d[c]), 0.0, dtype=cv2.CV_8U)
            for c in range(3)
        ]
        cv.img[r0 : r0 + 512] = cv2.merge(chans)


def _fields(cv: Canvas, style: Style, fields: list[Field], coarse: np.ndarray) -> None:
    """Fill each field, then modulate its pixels with rows and tramlines in world coordinates
    (phases relative to a whole-km origin, so every window draws the same stripes)."""
    if not fields:
        return
    ids = np.zeros((cv.h, cv.w), np.uint16)
    xs, ys = cv.xy_grids()
    ox = math.floor(cv.x0 / 1000.0) * 1000.0
    oy = math.floor(cv.y0 / 1000.0) * 1000.0
    xs = (xs - ox).astype(np.float32)
    ys = (ys - oy).astype(np.float32)
    width = max(1.6, 1.2 * cv.g)  # tramline profile width (m)
    for k, f in enumerate(fields, start=1):
        colour, a = style.crop(f)
        cv.fill(f.polygon, colour)
        cv.fill(f.polygon, k, target=ids, aa=False)
    for k, f in enumerate(fields, start=1):
        _, a = style.crop(f)
        bx0, by0, bx1, by1 = f.polygon.bounds
        c0 = max(0, int((bx0 - cv.x0) / cv.g) - 1)
        c1 = min(cv.w, int((bx1 - cv.x0) / cv.g) + 2)
        r0 = max(0, int((cv.y1 - by1) / cv.g) - 1)
        r1 = min(cv.h, int((cv.y1 - by0) / cv.g) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        mask = ids[r0:r1, c0:c1] == k
        if not mask.any():
            continue
        # Rows run along row_angle: the pattern varies across them.
        t = math.radians(f.row_angle_deg + 90.0)
        d = xs[None, c0:c1] * np.float32(math.cos(t)) + ys[r0:r1, None] * np.float32(math.sin(t))
        # Stripes finer than ~2.5 pixels would alias: fade them out.
        amp = a * float(np.clip((f.spacing_m / cv.g - 2.5) / 2.0, 0.0, 1.0))
        fac = np.cos(d * np.float32(2 * math.pi / f.spacing_m)) * np.float32(amp)
        fac += coarse[r0:r1, c0:c1] * np.float32(0.05) + np.float32(1.0)
        if f.tramline_m > 0:
            tm = np.abs(np.mod(d, np.float32(f.tramline_m)) - np.float32(0.5 * f.tramline_m))
            prof = np.clip(1.0 - tm / np.float32(width), 0.0, 1.0)
            fac -= prof * np.float32(0.22 * min(1.0, 1.6 / width))
        sub = cv.img[r0:r1, c0:c1]
        mod = np.clip(sub * fac[..., None], 0, 255).astype(np.uint8)
        np.copyto(sub, mod, where=mask[..., None])


def _water(cv: Canvas, world: World, style: Style, q) -> None:
    for lk in world.query("lakes", q):
        ring = np.asarray(lk.polygon.exterior.coords)
        cv.line(ring, style.colour("reeds"), 4.0, closed=True)
        cv.fill(lk.polygon, style.colour("water"))
        for d, key in ((-5.0, 0.35), (-12.0, 0.75)):
            inner = lk.polygon.buffer(d, quad_segs=4)
            mix = style.colour("water") * (1 - key) + style.colour("water_deep") * key
            cv.fill(inner, mix)
    for r in world.query("rivers", q):
        c = np.asarray(r.line.coords)
        cv.line(c, style.colour("bank"), r.width_m + 5.0)
        cv.line(c, style.colour("reeds"), r.width_m + 2.0)
        cv.line(c, style.colour("water"), r.width_m)
        cv.line(
            c, style.colour("water") * 0.75 + style.colour("water_deep") * 0.25, r.width_m * 0.5
        )


def _dashes(line, dash: float, gap: float) -> list[np.ndarray]:
    length = line.length
    starts = np.arange(gap / 2, max(0.0, length - dash), dash + gap)
    if not len(starts):
        return []
    a = shapely.get_coordinates(shapely.line_interpolate_point(line, starts))
    b = shapely.get_coordinates(shapely.line_interpolate_point(line, starts + dash))
    return [np.array([p, q]) for p, q in zip(a, b, strict=True)]


def _roads(cv: Canvas, world: World, style: Style, q) -> None:
    roads = world.query("roads", q)
    for r in roads:
        if r.kind in ("path", "track"):
            key = "path" if r.kind == "path" else "track"
            cv.line(np.asarray(r.line.coords), style.colour(key), r.width_m)
    paved = [r for r in roads if r.kind in ("street", "main")]
    for r in paved:
        cv.line(np.asarray(r.line.coords), style.colour("asphalt_edge"), r.width_m + 0.8)
    for r in paved:
        cv.line(np.asarray(r.line.coords), style.colour("asphalt"), r.width_m)
    for rb in world.query("roundabouts", q):
        c = np.array([[rb.x, rb.y]])
        outer, inner = rb.radius_m + rb.width_m / 2, rb.radius_m - rb.width_m / 2
        cv.circles(c[:, 0], c[:, 1], [outer + 0.4], style.colour("asphalt_edge"))
        cv.circles(c[:, 0], c[:, 1], [outer], style.colour("asphalt"))
        cv.circles(c[:, 0], c[:, 1], [inner], style.colour("marking") * 0.85)
        cv.circles(c[:, 0], c[:, 1], [inner - 0.6], style.colour("lawn", 0.7))
    for r in paved:
        if r.kind != "main":
            continue
        for seg in _dashes(r.line, 3.0, 6.0):
            cv.thin_line(seg, 0.15)
        for side in (-1.0, 1.0):
            off = r.line.offset_curve(side * (r.width_m / 2 - 0.45), quad_segs=2)
            for part in getattr(off, "geoms", [off]):
                if not part.is_empty:
                    cv.thin_line(np.asarray(part.coords), 0.15)
    for rb in world.query("roundabouts", q):
        th = np.linspace(0, 2 * math.pi, 48)
        rr = rb.radius_m + rb.width_m / 2 - 0.45
        cv.thin_line(np.c_[rb.x + rr * np.cos(th), rb.y + rr * np.sin(th)], 0.15, closed=True)


def _parkings(cv: Canvas, world: World, style: Style, q) -> None:
    for p in world.query("parkings", q):
        cv.fill_coords(p.rect.corners(), style.colour("asphalt", 0.6))
        for seg in p.lines():
            cv.thin_line(seg, 0.12)


def _sports(cv: Canvas, world: World, style: Style, q) -> None:
    for s in world.query("sports", q):
        r = s.rect
        if s.kind == "football":
            big = replace(r, length=r.length + 8.0, width=r.width + 8.0)
            cv.fill_coords(big.corners(), style.colour("pitch", 0.3))
            n = 12
            for i in range(n):
                u = -r.length / 2 + (i + 0.5) * r.length / n
                band = replace(r, cx=r.local(u, 0)[0], cy=r.local(u, 0)[1], length=r.length / n)
                cv.fill_coords(band.corners(), style.colour("pitch", 0.35 + 0.3 * (i % 2)))
            _pitch_lines(cv, r)
        else:
            cv.fill_coords(
                replace(r, length=r.length + 2, width=r.width + 2).corners(),
                style.colour("court_surround"),
            )
            cv.fill_coords(r.corners(), style.colour(s.surface))
            w1 = r.width / s.courts
            for k in range(s.courts):
                v = -r.width / 2 + (k + 0.5) * w1
                c = r.local(0, v)
                _tennis_lines(cv, replace(r, cx=c[0], cy=c[1], width=w1), style)


def _rect_lines(cv: Canvas, r, u0, u1, v0, v1, width) -> None:
    pts = np.array([r.local(u0, v0), r.local(u1, v0), r.local(u1, v1), r.local(u0, v1)])
    cv.thin_line(pts, width, closed=True)


def _pitch_lines(cv: Canvas, r) -> None:
    L, W = r.length / 2, r.width / 2
    w = 0.12
    _rect_lines(cv, r, -L, L, -W, W, w)
    cv.thin_line(np.array([r.local(0, -W), r.local(0, W)]), w)
    th = np.linspace(0, 2 * math.pi, 40)
    circle = np.array([r.local(9.15 * math.cos(t), 9.15 * math.sin(t)) for t in th])
    cv.thin_line(circle, w, closed=True)
    for s in (-1, 1):
        _rect_lines(cv, r, s * L, s * (L - 16.5), -20.16, 20.16, w)
        _rect_lines(cv, r, s * L, s * (L - 5.5), -9.16, 9.16, w)


def _tennis_lines(cv: Canvas, court, style: Style) -> None:
    L, W, S = 23.77 / 2, 10.97 / 2, 8.23 / 2
    w = 0.05 * 2
    _rect_lines(cv, court, -L, L, -W, W, w)
    for v in (-S, S):
        cv.thin_line(np.array([court.local(-L, v), court.local(L, v)]), w)
    for u in (-6.4, 6.4):
        cv.thin_line(np.array([court.local(u, -S), court.local(u, S)]), w)
    cv.thin_line(np.array([court.local(-6.4, 0), court.local(6.4, 0)]), w)
    cv.line(np.array([court.local(0, -W - 0.9), court.local(0, W + 0.9)]), style.colour("net"), 0.1)


def _apply_thin(cv: Canvas, style: Style) -> None:
    white = style.colour("marking").astype(np.float32)
    for r0 in range(0, cv.h, 512):
        m = cv.thin[r0 : r0 + 512]
        rows, cols = np.nonzero(m)
        if not len(rows):
            continue
        a = m[rows, cols].astype(np.float32)[:, None] / 255.0
        px = cv.img[r0 + rows, cols].astype(np.float32)
        cv.img[r0 + rows, cols] = np.clip(px * (1 - a) + white * a, 0, 255)


def _cars(cv: Canvas, world: World, style: Style, q) -> None:
    for p in world.query("parkings", q):
        for car in p.cars:
            r = car.rect()
            off = style.shadow_offset(1.4)
            cv.fill_coords(r.corners() + off, 255, target=cv.shadow)
            body = np.array(CAR_RGB[car.colour], dtype=np.float64)
            cv.fill_coords(r.corners(), body)
            cabin = replace(r, length=r.length * 0.5, width=r.width * 0.8)
            c = r.local(-0.1 * r.length, 0)
            cabin = replace(cabin, cx=c[0], cy=c[1])
            cv.fill_coords(cabin.corners(), body * 0.55 + 20)


def _canopy_in(world: World, q) -> Canopy:
    c = world.canopy
    if not len(c):
        return c
    m = (c.x >= q[0]) & (c.x <= q[2]) & (c.y >= q[1]) & (c.y <= q[3])
    return c.subset(m)


def _part_shadow(part, style: Style) -> np.ndarray:
    """The shadow polygon of a building part (convex hull of its base and shifted top)."""
    base = part.rect.corners()
    pts = [base, base + style.shadow_offset(part.eaves_m)]
    if part.gable:
        a, _ = part.rect.axes()
        c = np.array([part.rect.cx, part.rect.cy])
        ridge = np.array([c - a * part.rect.length / 2, c + a * part.rect.length / 2])
        pts.append(ridge + style.shadow_offset(part.ridge_m))
    hull = cv2.convexHull(np.vstack(pts).astype(np.float32))
    return hull.reshape(-1, 2).astype(np.float64)


def _shadows(cv: Canvas, style: Style, buildings, trees, canopy: Canopy) -> None:
    for b in buildings:
        for part in b.parts:
            cv.fill_coords(_part_shadow(part, style), 255, target=cv.shadow)
    if trees:
        x = np.array([t.x for t in trees])
        y = np.array([t.y for t in trees])
        r = np.array([t.crown_radius_m for t in trees])
        h = np.array([t.height_m for t in trees])
        off = style.shadow_offset(h - r)
        cv.circles(x + off[:, 0], y + off[:, 1], r, 255, target=cv.shadow)
        # the trunk's shadow
        for i in range(len(x)):
            cv.line(
                np.array([[x[i], y[i]], [x[i] + off[i, 0], y[i] + off[i, 1]]]),
                255,
                0.4,
                target=cv.shadow,
            )
    if len(canopy):
        off = style.shadow_offset(canopy.h * 0.35)
        cv.circles(canopy.x + off[:, 0], canopy.y + off[:, 1], canopy.r, 255, target=cv.shadow)
    k = np.float32(style.shadow)
    for r0 in range(0, cv.h, 512):
        m = cv.shadow[r0 : r0 + 512]
        rows, cols = np.nonzero(m)
        if not len(rows):
            continue
        f = 1.0 - k * m[rows, cols].astype(np.float32)[:, None] / 255.0
        px = cv.img[r0 + rows, cols].astype(np.float32)
        # shadows are darker and a little bluer (sky light)
        cv.img[r0 + rows, cols] = np.clip(px * f * np.array([0.96, 0.98, 1.04], np.float32), 0, 255)


def _draw_canopy(cv: Canvas, style: Style, c: Canopy) -> None:
    if not len(c):
        return
    sun = style.sun_vector[:2]
    order = np.argsort(c.h, kind="stable")
    c = c.subset(order)
    base = style.crowns(c.conifer, c.tone)
    cv.circles(c.x, c.y, c.r, base * 0.82)
    hx, hy = c.x + sun[0] * c.r * 0.3, c.y + sun[1] * c.r * 0.3
    cv.circles(hx, hy, c.r * 0.6, np.clip(base * 1.12, 0, 255))


def _tree_crowns(cv: Canvas, style: Style, trees) -> None:
    if not trees:
        return
    sun = style.sun_vector[:2]
    x = np.array([t.x for t in trees])
    y = np.array([t.y for t in trees])
    r = np.array([t.crown_radius_m for t in trees])
    base = style.crowns(
        np.array([t.kind == "conifer" for t in trees]),
        np.array([position_tone(t.x, t.y) for t in trees]),
    )
    cv.circles(x, y, r, base * 0.8)
    cv.circles(x + sun[0] * r * 0.3, y + sun[1] * r * 0.3, r * 0.62, np.clip(base * 1.12, 0, 255))


def _roof_planes(part) -> list[tuple[np.ndarray, np.ndarray]]:
    """(corners (4, 3), unit normal) of a part's roof planes: 1 for flat, 2 for a gable (the
    ridge runs along the rect's length, from r0 at the back to r1 at the front)."""
    c = part.rect.corners()
    e, h = part.eaves_m, part.ridge_m
    if not part.gable:
        return [(np.c_[c, np.full(4, e)], np.array([0.0, 0.0, 1.0]))]
    a, n = part.rect.axes()
    ctr = np.array([part.rect.cx, part.rect.cy])
    r0, r1 = ctr - a * part.rect.length / 2, ctr + a * part.rect.length / 2
    slope = math.atan2(h - e, part.rect.width / 2)
    sn, cs = math.sin(slope), math.cos(slope)
    return [
        (np.array([[*c[0], e], [*c[1], e], [*r1, h], [*r0, h]]), np.array([*(-n * sn), cs])),
        (np.array([[*c[2], e], [*c[3], e], [*r0, h], [*r1, h]]), np.array([*(n * sn), cs])),
    ]


def _roofs(cv: Canvas, style: Style, buildings: list[Building]) -> None:
    for b in sorted(buildings, key=lambda b: b.height_m):
        base = style.colour(f"roof_{b.roof}", b.wall_tone, 0.18)
        for part in sorted(b.parts, key=lambda p: p.ridge_m):
            for poly, normal in _roof_planes(part):
                cv.fill_coords(poly[:, :2], np.clip(base * style.shade(normal), 0, 255))
            if part.gable:
                a, _ = part.rect.axes()
                ctr = np.array([part.rect.cx, part.rect.cy])
                ridge = np.array([ctr - a * part.rect.length / 2, ctr + a * part.rect.length / 2])
                cv.line(ridge, base * 0.7, 0.25)
            else:
                cv.line(part.rect.corners(), base * 0.78, 0.5, closed=True)
