"""The IVF side of VectorSearch (core.search): filtered search over inverted lists.

Kept apart from search.py for size; VectorSearch mixes it in. An IVF index keeps its chip ids
and codes in its inverted lists, which may be memory-mapped from disk (an index merged on disk
by geobridge_scale, or one read with IO_FLAG_MMAP), so nothing here copies the lists: a
directory of (id, list, offset) is read once, on the first filtered search that needs it, and
an exact filtered search scans just the lists that hold allowed chips, with an id selector, in
faiss's own scanner (decoding codes in Python costs ~5 us a vector; a selector check ~2 ns).
"""

from __future__ import annotations

import faiss
import numpy as np

PAD_SCORE = -np.finfo(np.float32).max  # what faiss returns where fewer than k exist
# Allowed ids become a bitmap when the largest is below this many per indexed vector (the
# engine's grid-position ids); sparser ids (geobridge_scale's Morton ids) a hashed batch.
BITMAP_IDS_PER_VECTOR = 16


class IVFMixin:
    """Filtered search for VectorSearch when its index is a faiss IndexIVF."""

    index: faiss.Index
    ivf: faiss.IndexIVF
    n: int
    dim: int
    nprobe: int
    _directory: tuple | None
    _sel_key: tuple | None

    def _ivf_filtered(
        self, q: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not len(allowed) or not self.n:
            return np.full((len(q), k), PAD_SCORE, np.float32), np.full((len(q), k), -1)
        how, nprobe = self.plan(len(allowed), k, len(q))
        if how == "index":
            params = faiss.SearchParametersIVF(sel=self._ivf_selector(allowed), nprobe=nprobe)
            scores, ids = self.index.search(q, k, params=params)
            if (ids[:, : min(k, len(allowed))] >= 0).all():
                return scores, ids
            # Fewer found than allowed (the widened scan missed lists holding allowed chips, or
            # `allowed` names chips the index lacks): the exact answer settles it.
        return self._ivf_exact(q, k, allowed)

    def _ivf_selector(self, allowed: np.ndarray) -> faiss.IDSelector:
        """An id selector for `allowed`, kept for the next call with the same ids: a region
        stays the same over a session's queries, and a million ids take ~0.1 s to hash."""
        key = (len(allowed), int(allowed.sum()), int((allowed * 0x9E3779B1).sum()),
               allowed[:16].tobytes(), allowed[-16:].tobytes())  # fmt: skip
        if key == self._sel_key:
            return self._sel
        lo, hi = int(allowed.min()), int(allowed.max())
        if lo >= 0 and hi < BITMAP_IDS_PER_VECTOR * max(self.n, len(allowed)) + 65_536:
            mask = np.zeros(hi + 1, bool)
            mask[allowed] = True
            buf = np.packbits(mask, bitorder="little")  # bit i % 8 of byte i // 8, as faiss
            sel = faiss.IDSelectorBitmap(len(buf), faiss.swig_ptr(buf))
        else:
            buf = np.ascontiguousarray(allowed, np.int64)
            sel = faiss.IDSelectorBatch(len(buf), faiss.swig_ptr(buf))
        self._sel, self._sel_buf, self._sel_key = sel, buf, key  # the bitmap outlives `sel`
        return sel

    def _ivf_directory(self) -> None:
        """Read every list's ids once: rows are then positions in this list-major order."""
        if self._directory is not None:
            return
        inv = self.ivf.invlists
        ids, lists, offsets = [], [], []
        for lno in range(self.ivf.nlist):
            m = inv.list_size(lno)
            if not m:
                continue
            ptr = inv.get_ids(lno)
            ids.append(faiss.rev_swig_ptr(ptr, m).astype(np.int64))  # a copy
            inv.release_ids(lno, ptr)
            lists.append(np.full(m, lno, np.int32))
            offsets.append(np.arange(m, dtype=np.int32))
        empty = [np.zeros(0, np.int64)]
        self._lists = np.concatenate(lists or empty).astype(np.int32)
        self._offsets = np.concatenate(offsets or empty).astype(np.int32)
        self._index_rows(np.concatenate(ids or empty))
        self._directory = (self.row_ids, self._lists, self._offsets)

    def _ivf_exact(
        self, q: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact over the allowed chips: every list that holds one of them is scanned, with
        the selector, so each allowed chip is scored (by faiss's own scanner: the same scores
        as an unfiltered search) and no other."""
        rows = self.rows_of(allowed)  # also reads the directory once
        scores = np.full((len(q), k), PAD_SCORE, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if not len(rows):
            return scores, ids
        lists = np.unique(self._lists[rows]).astype(np.int64)
        keys = np.ascontiguousarray(np.broadcast_to(lists, (len(q), len(lists))))
        # The scanner adds q . centroid to residual codes' scores: it must be given it.
        coarse = np.ascontiguousarray(q @ self._centroids()[lists].T, dtype=np.float32)
        sel = self._ivf_selector(self.row_ids[rows])
        params = faiss.SearchParametersIVF(sel=sel, nprobe=len(lists))
        # The SWIG method itself (faiss's Python wrapper of it takes no params before 1.9).
        self.ivf.search_preassigned_c(len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(keys),
                                      faiss.swig_ptr(coarse), faiss.swig_ptr(scores),
                                      faiss.swig_ptr(ids), False, params)  # fmt: skip
        return scores, ids

    def _centroids(self) -> np.ndarray:
        quantizer = faiss.downcast_index(self.ivf.quantizer)
        if not hasattr(self, "_centroid_array"):
            if isinstance(quantizer, faiss.IndexFlat):
                ptr = quantizer.get_xb()
                self._centroid_array = faiss.rev_swig_ptr(ptr, self.ivf.nlist * self.dim)
            else:
                self._centroid_array = quantizer.reconstruct_n(0, self.ivf.nlist)
            self._centroid_array = self._centroid_array.reshape(self.ivf.nlist, self.dim)
        return self._centroid_array
