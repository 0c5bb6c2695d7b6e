"""The large index: IVF with SQ or PQ codes, trained on a sample, filled per block, merged on
disk and opened memory-mapped.

    train_ivf(sample, factory)              -> trained, empty index (written once)
    fill_block(trained, ids, vectors, path) -> one block's codes as a small IVF file
    merge(trained, block_files, folder)     -> folder/vectors.faiss + folder/vectors.ivfdata
    open_ondisk(folder)                     -> the index, inverted lists mmapped from ivfdata

Filling is independent per block (a Ray task each, or a plain loop), so no process ever holds
more than one block's vectors; `merge` streams the block files' lists into one ivfdata file
(faiss `merge_ondisk`), and a reader maps that file: opening costs the coarse quantizer only,
whatever the count. The ivfdata file is found beside vectors.faiss wherever the folder moves
(IO_FLAG_ONDISK_SAME_DIR).

Region filters are id ranges of the chip ids' Z order (core.chipid): `range_selector` turns a
box into a FAISS selector the IVF scan honours per id.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import faiss
import numpy as np

from geobridge_qgis.core import chipid
from geobridge_qgis.core.errors import UserError

IVFDATA = "vectors.ivfdata"
TRAIN_PER_LIST = 40  # k-means wants ~40 points per centroid; more buys little


def nlist_for(count: int) -> int:
    """Lists for `count` vectors: about 4 sqrt(N), a power of two, 16 to 65536."""
    return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(count, 1)))))))


def factory_for(count: int, dim: int, codes: str = "SQ8") -> str:
    return f"IVF{nlist_for(count)},{codes}"


def nprobe_for(nlist: int) -> int:
    """Lists scanned per query; measured in tools/bench_scale.py for recall@10 >= 0.9."""
    return max(8, nlist // 64)


def parse_factory(factory: str) -> tuple[int, str]:
    """("IVF4096,SQ8") -> (4096, "SQ8"); codes: Flat, SQ8, SQfp16 or PQ<m>[x<bits>]."""
    m = re.fullmatch(r"IVF(\d+),(Flat|SQ8|SQfp16|PQ\d+(?:x\d+)?)", factory)
    if not m:
        raise UserError(f"--factory {factory}: expected IVF<lists>,<Flat|SQ8|SQfp16|PQ<m>x<bits>>")
    return int(m.group(1)), m.group(2)


def new_ivf(dim: int, factory: str) -> faiss.Index:
    """An untrained IVF index for inner product, made from faiss's classes: the engine never
    parses factory strings (faiss's C++ regex aborts inside the QGIS process), and the string
    is kept as the index type's name."""
    nlist, codes = parse_factory(factory)
    quantizer = faiss.IndexFlatIP(dim)
    ip = faiss.METRIC_INNER_PRODUCT
    if codes == "Flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    elif codes.startswith("SQ"):
        qtype = faiss.ScalarQuantizer.QT_8bit if codes == "SQ8" else faiss.ScalarQuantizer.QT_fp16
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype, ip)
    else:
        m, _, bits = codes[2:].partition("x")
        if dim % int(m):
            raise UserError(f"--factory {factory}: {m} sub-quantizers do not divide {dim}")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, int(m), int(bits or 8), ip)
    index.own_fields = True
    quantizer.this.disown()  # the index frees it
    return index


def train_ivf(
    sample: np.ndarray, factory: str, threads: int | None = None, niter: int | None = None
) -> faiss.Index:
    """An empty IVF index trained on `sample` (float32, L2-normalised, inner product)."""
    if threads:
        faiss.omp_set_num_threads(threads)
    x = np.ascontiguousarray(sample, np.float32)
    index = new_ivf(x.shape[1], factory)
    ivf = faiss.extract_index_ivf(index)
    # The coarse k-means needs no more than TRAIN_PER_LIST points per list.
    ivf.cp.max_points_per_centroid = TRAIN_PER_LIST * 4
    if niter:
        ivf.cp.niter = niter
    index.train(x)
    ivf.nprobe = nprobe_for(ivf.nlist)
    return index


def fill_block(
    trained: Path | str | faiss.Index, ids: np.ndarray, vectors: np.ndarray, out: Path
) -> int:
    """Add one block's vectors to a copy of the trained index and save its lists (atomically).

    The block file holds the inverted lists only: the coarse quantizer (nlist x D floats,
    200 MB at 65536 lists of 768) is the trained file's, and a copy per block would outweigh
    the block's codes."""
    if isinstance(trained, faiss.Index):
        index = faiss.clone_index(trained)
    else:
        index = faiss.read_index(str(trained))
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64))
    ivf = faiss.extract_index_ivf(index)
    quantizer, empty = ivf.quantizer, faiss.IndexFlatIP(index.d)
    ivf.quantizer = empty  # merge_ondisk reads the lists, never the quantizer
    try:
        tmp = out.with_name(out.name + ".tmp")
        faiss.write_index(index, str(tmp))
    finally:
        ivf.quantizer = quantizer  # owned by the index again, freed with it
    tmp.replace(out)
    return int(index.ntotal)


def merge(trained_path: Path | str, block_files: list[Path], folder: Path) -> faiss.Index:
    """Merge the block files' inverted lists into folder/vectors.ivfdata (on disk, streamed) and
    write folder/vectors.faiss pointing at it."""
    from faiss.contrib.ondisk import merge_ondisk

    index = faiss.read_index(str(trained_path))
    ivfdata = folder / IVFDATA
    if ivfdata.exists():
        ivfdata.unlink()  # a merge killed half-way starts over; the block files are kept
    merge_ondisk(index, [str(p) for p in block_files], str(ivfdata))
    faiss.write_index(index, str(folder / "vectors.faiss"))
    return index


def open_ondisk(folder: Path | str) -> faiss.Index:
    """The merged index with its lists memory-mapped from the ivfdata file beside it."""
    return faiss.read_index(str(Path(folder) / "vectors.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)


class RangeSelector:
    """A FAISS selector for chip ids inside a box: a union of Z-order id ranges.

    Holds the sub-selectors (FAISS keeps raw pointers to them)."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self._parts = [faiss.IDSelectorRange(int(lo), int(hi) + 1) for lo, hi in ranges]
        sel = self._parts[0] if self._parts else faiss.IDSelectorRange(0, 0)
        for part in self._parts[1:]:
            sel = faiss.IDSelectorOr(sel, part)
            self._parts.append(sel)
        if ranges:
            # Most scanned ids lie outside the whole span: one comparison rejects them.
            span = faiss.IDSelectorRange(int(ranges[0][0]), int(ranges[-1][1]) + 1)
            self._parts.append(span)
            sel = faiss.IDSelectorAnd(span, sel)
        self.selector = sel

    def contains(self, ids: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(ids), bool)
        for lo, hi in self.ranges:
            inside |= (ids >= lo) & (ids <= hi)
        return inside


def search_box(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    box: tuple[float, float, float, float],
    chip_sizes: tuple[float, ...],
    overlap: float,
    nprobe: int | None = None,
    max_ranges: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k among chips centred in `box` (grid CRS): the IVF scan skips ids outside the box's
    Z ranges, and the few chips inside the ranges but outside the box are dropped after."""
    ranges = sorted(chipid.ranges_in_box(box, chip_sizes, overlap, max_ranges))
    sel = RangeSelector(ranges)
    ivf = faiss.extract_index_ivf(index)
    params = faiss.SearchParametersIVF(sel=sel.selector, nprobe=nprobe or ivf.nprobe)
    q = np.ascontiguousarray(queries, np.float32)
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    todo, fetch = np.arange(len(q)), k * 2
    # The ranges may hold chips outside the box (a capped superset): ask for more until k
    # chips inside remain, or the scanned lists hold no more.
    while len(todo):
        scores, ids = index.search(q[todo], fetch, params=params)
        again = []
        for r, qi in enumerate(todo):
            ok = ids[r] >= 0
            cand, sc = ids[r][ok], scores[r][ok]
            _, cx, cy = chipid.centres(cand, chip_sizes, overlap)
            keep = (cx >= box[0]) & (cx <= box[2]) & (cy >= box[1]) & (cy <= box[3])
            n = min(k, int(keep.sum()))
            out_i[qi, :n] = cand[keep][:n]
            out_s[qi, :n] = sc[keep][:n]
            if n < k and ok.all():
                again.append(qi)
        todo, fetch = np.asarray(again, np.int64), fetch * 4
    return out_s, out_i
