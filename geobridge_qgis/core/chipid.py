"""Chip ids that carry their place: size class and lattice position, in Morton order.

A chip of the grid (tiling.plan_grid) sits at lattice position (kx, ky) of its size class:
its centre is (kx * stride, ky * stride) in the grid's metric CRS, stride = size * (1 -
overlap). Its 64-bit id is

    bit 63      0 (ids are positive int64, as FAISS wants)
    bits 58-61  size class (index into the grid's chip sizes; at most 15)
    bits 0-57   kx + 2**28 and ky + 2**28 (29 bits each) interleaved bit by bit (Morton, Z-order)

so ids of one size class sort along a Z curve: chips near each other get near ids, a box on
the ground is a few id ranges, and a chip's footprint follows from its id and the grid's
(chip sizes, overlap, CRS) alone - an index of 1e8 chips needs no polygon per chip. 29 bits at
a 50 m stride span 13 million km: any projected CRS fits.

Indexes built before these ids keep their own (ids are stored in chips.npz and FAISS, nothing
recomputes them); `decode` is meaningful only for indexes whose manifest says
`"chip_ids": "morton"`.
"""

from __future__ import annotations

import numpy as np

SCHEME = "morton"
SIZE_SHIFT = 58
COORD_BITS = 29
OFFSET = 1 << (COORD_BITS - 1)
MAX_SIZE_CLASSES = 15
_MORTON_MASK = (1 << (2 * COORD_BITS)) - 1

_M = [
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, 0x5555555555555555),
]


def _spread(v: np.ndarray) -> np.ndarray:
    """29-bit unsigned values -> their bits at even positions."""
    x = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in _M:
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _compact(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) & np.uint64(0x5555555555555555)
    x = (x | (x >> np.uint64(1))) & np.uint64(0x3333333333333333)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    return x


def encode(size_index: int | np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Chip ids (int64) of lattice positions (kx, ky) of size class `size_index`."""
    kx, ky = np.asarray(kx, np.int64), np.asarray(ky, np.int64)
    if np.any(np.abs(kx) >= OFFSET) or np.any(np.abs(ky) >= OFFSET):
        raise ValueError("lattice position beyond the 29-bit range of chip ids")
    si = np.asarray(size_index, np.uint64)
    code = _spread(kx + OFFSET) | (_spread(ky + OFFSET) << np.uint64(1))
    return ((si << np.uint64(SIZE_SHIFT)) | code).astype(np.int64)


def decode(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size class, kx, ky) of chip ids."""
    u = np.asarray(ids, np.int64).astype(np.uint64)
    code = u & np.uint64(_MORTON_MASK)
    kx = _compact(code).astype(np.int64) - OFFSET
    ky = _compact(code >> np.uint64(1)).astype(np.int64) - OFFSET
    return (u >> np.uint64(SIZE_SHIFT)).astype(np.int64), kx, ky


def strides(chip_sizes: tuple[float, ...], overlap: float) -> np.ndarray:
    return np.asarray(chip_sizes, np.float64) * (1 - overlap)


def centres(
    ids: np.ndarray, chip_sizes: tuple[float, ...], overlap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size m, centre x, centre y) in the grid's CRS, from the ids alone."""
    si, kx, ky = decode(ids)
    if len(si) and si.max() >= len(chip_sizes):
        raise ValueError("chip id of a size class the grid does not have")
    sizes = np.asarray(chip_sizes, np.float64)[si]
    step = strides(chip_sizes, overlap)[si]
    return sizes, kx * step, ky * step


def ids_at(
    size_index: int, cx: np.ndarray, cy: np.ndarray, chip_sizes: tuple[float, ...], overlap: float
) -> np.ndarray:
    """Ids of the chips of size class `size_index` centred at (cx, cy) (snapped to the lattice)."""
    step = float(strides(chip_sizes, overlap)[size_index])
    kx = np.round(np.asarray(cx, np.float64) / step).astype(np.int64)
    ky = np.round(np.asarray(cy, np.float64) / step).astype(np.int64)
    return encode(size_index, kx, ky)


def footprints(ids: np.ndarray, chip_sizes: tuple[float, ...], overlap: float) -> np.ndarray:
    """[N, 4] (xmin, ymin, xmax, ymax) of each chip in the grid's CRS."""
    sizes, cx, cy = centres(ids, chip_sizes, overlap)
    h = sizes / 2
    return np.stack([cx - h, cy - h, cx + h, cy + h], axis=1)


# ---------------------------------------------------------------- boxes as id ranges


def ranges_in_box(
    box: tuple[float, float, float, float],
    chip_sizes: tuple[float, ...],
    overlap: float,
    max_ranges: int = 16,
) -> list[tuple[int, int]]:
    """Inclusive id ranges that hold every chip whose centre lies in `box` (grid CRS).

    Exact (only those chips) when the box decomposes into at most `max_ranges` Z-curve ranges
    per size class; otherwise the nearest ranges are joined, a superset the caller filters by
    centre. A FAISS selector over few ranges stays cheap per scanned id.
    """
    out: list[tuple[int, int]] = []
    for si, step in enumerate(strides(chip_sizes, overlap)):
        kx0, kx1 = int(np.ceil(box[0] / step)), int(np.floor(box[2] / step))
        ky0, ky1 = int(np.ceil(box[1] / step)), int(np.floor(box[3] / step))
        if kx1 < kx0 or ky1 < ky0:
            continue
        cells = _z_ranges(kx0 + OFFSET, kx1 + OFFSET, ky0 + OFFSET, ky1 + OFFSET, max_ranges)
        base = si << SIZE_SHIFT
        out.extend((base | lo, base | hi) for lo, hi in cells)
    return out


def _z_ranges(x0: int, x1: int, y0: int, y1: int, max_ranges: int) -> list[tuple[int, int]]:
    """Z-curve code ranges covering the cell box [x0, x1] x [y0, y1] (inclusive).

    Quadtree cells partly inside the box are split level by level (vectorised) until cells
    are whole or the budget of cells is spent; what is left is taken whole (a superset)."""
    # Aligned quadtree cells one level above the box's extent: at most 2 x 2 of them cover it.
    level = max(1, int(max(x1 - x0, y1 - y0)).bit_length())
    span = 1 << level
    px, py = np.meshgrid(
        np.arange(x0 >> level << level, x1 + 1, span, dtype=np.int64),
        np.arange(y0 >> level << level, y1 + 1, span, dtype=np.int64),
    )
    px, py = px.ravel(), py.ravel()
    los, his = [], []
    budget, n_full = 64 * max_ranges, 0
    while len(px) and level > 0 and n_full + 4 * len(px) <= budget:
        level -= 1
        span = 1 << level
        cx = np.concatenate([px, px + span, px, px + span])
        cy = np.concatenate([py, py, py + span, py + span])
        hit = ~((cx > x1) | (cy > y1) | (cx + span - 1 < x0) | (cy + span - 1 < y0))
        cx, cy = cx[hit], cy[hit]
        whole = (cx >= x0) & (cx + span - 1 <= x1) & (cy >= y0) & (cy + span - 1 <= y1)
        lo = _cells(cx[whole], cy[whole])
        los.append(lo)
        his.append(lo + (1 << (2 * level)) - 1)
        n_full += len(lo)
        px, py = cx[~whole], cy[~whole]
    lo = _cells(px, py)
    los.append(lo)
    his.append(lo + (1 << (2 * level)) - 1)
    lo, hi = np.concatenate(los), np.concatenate(his)
    order = np.argsort(lo)
    lo, hi = lo[order], hi[order]
    if not len(lo):
        return []
    # Join touching ranges, then the closest ones until at most max_ranges are left.
    gaps = lo[1:] - hi[:-1]
    breaks = np.flatnonzero(gaps > 1)
    if len(breaks) > max_ranges - 1:
        breaks = np.sort(breaks[np.argsort(-gaps[breaks], kind="stable")[: max_ranges - 1]])
    starts = np.r_[0, breaks + 1]
    stops = np.r_[breaks, len(lo) - 1]
    return [(int(lo[a]), int(hi[b])) for a, b in zip(starts, stops, strict=True)]


def _cells(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Z-curve codes (uint64 as int64) of unsigned cell coordinates."""
    return (_spread(x) | (_spread(y) << np.uint64(1))).astype(np.int64)
