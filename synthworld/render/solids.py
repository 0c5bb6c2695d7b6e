"""Buildings and single trees standing in 3D in a drone view, painted far to near."""

from __future__ import annotations

import weakref

import cv2
import numpy as np

from geobridge_qgis.core.camera import Camera

from ..world import World
from .canvas import AA, ONE, SHIFT, cv_colour
from .style import Style, position_tone


class _Packed:
    """A world's building parts and single trees as arrays (built once per world): the 3D
    pass of a drone view projects them all with one matrix product."""

    def __init__(self, world: World):
        parts = [(i, part) for i, b in enumerate(world.buildings) for part in b.parts]
        n = len(parts)
        self.corners = np.zeros((n, 4, 2))
        self.ridge_ends = np.zeros((n, 2, 2))  # back (r0), front (r1)
        self.eaves, self.ridge = np.zeros(n), np.zeros(n)
        self.axis_n = np.zeros((n, 2))  # unit vector across the part (its +n side)
        self.building = np.zeros(n, np.int64)
        for k, (i, part) in enumerate(parts):
            rect = part.rect
            a, nv = rect.axes()
            ctr = np.array([rect.cx, rect.cy])
            self.corners[k] = rect.corners()
            self.ridge_ends[k] = [ctr - a * rect.length / 2, ctr + a * rect.length / 2]
            self.eaves[k], self.ridge[k] = part.eaves_m, part.ridge_m
            self.axis_n[k] = nv
            self.building[k] = i
        self.gable = self.ridge > self.eaves + 0.05
        self.half_width = np.array([p.rect.width / 2 for _, p in parts]).reshape(n)
        self.centre = self.corners.mean(axis=1) if n else np.zeros((0, 2))
        self.roof = np.array([world.buildings[i].roof for i, _ in parts], dtype=object)
        self.tone = np.array([world.buildings[i].wall_tone for i, _ in parts]).reshape(n)
        t = world.trees
        self.tx = np.array([v.x for v in t]).reshape(-1)
        self.ty = np.array([v.y for v in t]).reshape(-1)
        self.tr = np.array([v.crown_radius_m for v in t]).reshape(-1)
        self.th = np.array([v.height_m for v in t]).reshape(-1)
        self.tcon = np.array([v.kind == "conifer" for v in t], dtype=bool).reshape(-1)
        self.ttone = np.array([position_tone(v.x, v.y) for v in t]).reshape(-1)


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _packed(world: World) -> _Packed:
    p = _PACKED.get(world)
    if p is None:
        p = _PACKED[world] = _Packed(world)
    return p


# Point indices of a part: 0-3 base corners, 4-7 corners at the eaves, 8-9 ridge ends (back,
# front). Walls i -> i+1 (counter-clockwise, outside on the right); wall 1 is the front gable
# end (apex 9), wall 3 the back (apex 8).
_WALLS = np.array([[0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])
_GABLE_TRI = np.array([[5, 6, 9], [5, 6, 9], [7, 4, 8], [7, 4, 8]])  # used for walls 1 and 3
_PLANES = np.array([[4, 5, 9, 8], [6, 7, 8, 9]])  # the -n side, the +n side
_FLAT = [4, 5, 6, 7]


def draw_solids(img: np.ndarray, world: World, camera: Camera, style: Style, size, fp) -> None:
    """Buildings (walls facing the camera, gable ends, roof planes) and single trees standing
    up, painted far to near."""
    pk = _packed(world)
    lo, hi = fp.min(axis=0) - 40.0, fp.max(axis=0) + 40.0
    bsel = np.flatnonzero(((pk.centre >= lo) & (pk.centre <= hi)).all(axis=1))
    tsel = np.flatnonzero((pk.tx >= lo[0]) & (pk.tx <= hi[0]) & (pk.ty >= lo[1]) & (pk.ty <= hi[1]))
    if not len(bsel) and not len(tsel):
        return
    r = camera.rotation()
    k = camera.intrinsics(size)
    f = k[0, 0]
    pos = camera.position
    sun = style.sun_vector
    lim = 16.0 * max(size)

    def project(p3: np.ndarray):
        pc = (p3 - pos) @ r.T
        z = pc[..., 2]
        ok = (z > 0.5).all(axis=-1)
        zs = np.where(z > 0.5, z, 0.5)
        uv = np.stack([f * pc[..., 0] / zs + k[0, 2], f * pc[..., 1] / zs + k[1, 2]], axis=-1)
        ok &= (np.abs(uv) < lim).all(axis=(-1, -2))
        return np.round(uv * ONE).astype(np.int32), ok, z

    order_depth, order_kind, order_idx = [], [], []
    if len(bsel):
        n = len(bsel)
        c = pk.corners[bsel]
        p3 = np.zeros((n, 10, 3))
        p3[:, 0:4, :2] = c
        p3[:, 4:8, :2] = c
        p3[:, 4:8, 2] = pk.eaves[bsel, None]
        p3[:, 8:10, :2] = pk.ridge_ends[bsel]
        p3[:, 8:10, 2] = pk.ridge[bsel, None]
        uv, ok, _ = project(p3)
        ctr3 = np.c_[pk.centre[bsel], pk.ridge[bsel] / 2]
        depth = (ctr3 - pos) @ r[2]
        edge = np.roll(c, -1, axis=1) - c
        normal = np.stack([edge[..., 1], -edge[..., 0]], axis=-1)
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
        mid = c + edge / 2
        visible = ((pos[:2] - mid) * normal).sum(-1) > 0
        flat_lit = 0.45 + 0.75 * sun[2]
        wall_shade = (0.45 + 0.75 * np.maximum(0.0, normal @ sun[:2])) / flat_lit
        walls = np.array([style.colour("wall", t, 0.2) for t in pk.tone[bsel]])
        wall_col = np.clip(walls[:, None, :] * wall_shade[..., None] * 0.92, 0, 255)
        roofs = np.array(
            [
                style.colour(f"roof_{rf}", t, 0.18)
                for rf, t in zip(pk.roof[bsel], pk.tone[bsel], strict=True)
            ]
        )
        slope = np.arctan2(pk.ridge[bsel] - pk.eaves[bsel], pk.half_width[bsel])
        nrm = pk.axis_n[bsel]
        plane_shade = []
        for side in (-1.0, 1.0):
            nv = np.c_[side * nrm * np.sin(slope)[:, None], np.cos(slope)]
            plane_shade.append((0.45 + 0.75 * np.maximum(0.0, nv @ sun)) / flat_lit)
        plane_col = np.clip(roofs[:, None, :] * np.stack(plane_shade, axis=1)[..., None], 0, 255)
        # the plane whose centre is farther from the camera is painted first
        pc3 = p3[:, _PLANES].mean(axis=2)
        far_first = np.linalg.norm(pc3[:, 0] - pos, axis=-1) >= np.linalg.norm(
            pc3[:, 1] - pos, axis=-1
        )
        # (cv2 wants C-contiguous int32 point arrays; fancy indexing may not give them)
        quads = np.ascontiguousarray(uv[:, _WALLS])
        tris = np.ascontiguousarray(uv[:, _GABLE_TRI])
        planes = np.ascontiguousarray(uv[:, _PLANES])
        flats = np.ascontiguousarray(uv[:, _FLAT])
        wall_col_l, plane_col_l = wall_col.tolist(), plane_col.tolist()
        roof_l, gable = (roofs * 0.78).tolist(), pk.gable[bsel]
        order_depth.append(depth[ok])
        order_kind.append(np.zeros(int(ok.sum()), np.int8))
        order_idx.append(np.flatnonzero(ok))
    if len(tsel):
        x, y, rr, h = pk.tx[tsel], pk.ty[tsel], pk.tr[tsel], pk.th[tsel]
        top = h - rr
        low = np.maximum(rr * 0.6, h - 1.9 * rr)
        kk = 0.35 * rr
        t3 = np.stack(
            [
                np.c_[x, y, np.zeros_like(x)],
                np.c_[x, y, low],
                np.c_[x, y, top],
                np.c_[x + sun[0] * kk, y + sun[1] * kk, top + sun[2] * kk],
            ],
            axis=1,
        )
        tuv, tok, tz = project(t3)
        rad = f * rr / np.maximum(tz[:, 2], 0.5)
        tok &= rad >= 0.3
        tcol = style.crowns(pk.tcon[tsel], pk.ttone[tsel])
        con = pk.tcon[tsel]
        lower = np.where(con, 0.85, 0.95)
        upper = np.where(con, 0.6, 1.0)
        r_low = np.round(rad * lower * ONE).astype(int).tolist()
        r_up = np.round(rad * upper * ONE).astype(int).tolist()
        r_hl = np.round(rad * upper * 0.6 * ONE).astype(int).tolist()
        trunk_w = np.maximum(1, np.round(f * 0.35 / np.maximum(tz[:, 0], 0.5))).astype(int).tolist()
        c_low, c_up = (tcol * 0.72).tolist(), (tcol * 0.82).tolist()
        c_hl = np.clip(tcol * 1.12, 0, 255).tolist()
        trunk = cv_colour(style.colour("trunk"))
        tpts = tuv.tolist()
        order_depth.append(((t3[:, 2] - pos) @ r[2])[tok])
        order_kind.append(np.ones(int(tok.sum()), np.int8))
        order_idx.append(np.flatnonzero(tok))
    depth_all = np.concatenate(order_depth)
    kind_all = np.concatenate(order_kind)
    idx_all = np.concatenate(order_idx)
    for o in np.argsort(-depth_all, kind="stable"):
        i = int(idx_all[o])
        if kind_all[o] == 0:
            for w in range(4):
                if visible[i, w]:
                    col = wall_col_l[i][w]
                    cv2.fillConvexPoly(img, quads[i, w], col, AA, SHIFT)
                    if gable[i] and w % 2:
                        cv2.fillConvexPoly(img, tris[i, w], col, AA, SHIFT)
            if gable[i]:
                first = 0 if far_first[i] else 1
                for pl in (first, 1 - first):
                    cv2.fillConvexPoly(img, planes[i, pl], plane_col_l[i][pl], AA, SHIFT)
            else:
                cv2.fillConvexPoly(img, flats[i], plane_col_l[i][0], AA, SHIFT)
                cv2.polylines(img, [flats[i]], True, roof_l[i], 1, AA, SHIFT)
        else:
            p = tpts[i]
            cv2.line(img, p[0], p[1], trunk, trunk_w[i], AA, SHIFT)
            cv2.circle(img, p[1], r_low[i], c_low[i], -1, AA, SHIFT)
            cv2.circle(img, p[2], r_up[i], c_up[i], -1, AA, SHIFT)
            cv2.circle(img, p[3], r_hl[i], c_hl[i], -1, AA, SHIFT)
