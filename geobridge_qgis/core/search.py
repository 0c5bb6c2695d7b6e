"""FAISS indexes of chip embeddings: how they are made, and search with an allowed-id filter.

Indexes are built from faiss's classes, never from factory strings: `faiss.index_factory`
parses its string with C++ std::regex, and inside the QGIS desktop process that aborts the
whole application (`munmap_chunk(): invalid pointer`). The factory string equivalent to what
is built is still recorded as the index type's name.

A filtered search (a region, a GPS circle) must return what an exact search over the allowed
chips would, whatever the index type:

- few allowed chips: an exact search over just those vectors, read in place from the index's
  own float32 storage (a numpy view, no copy of the index, no second file on disk; the same
  floats faiss scores with, so scores agree with an unfiltered search);
- many allowed chips on an HNSW index: the graph walk with an id selector and efSearch scaled
  by 1/selectivity, because a filtered walk keeps only the allowed share of what it visits;
  exact search whenever that would be cheaper or the walk would need an unreasonable efSearch;
- any row that still comes back with fewer results than it should is answered exactly.

Selectors are passed to the index inside the ID map, over its row numbers, in the parameter
class that index type expects (`SearchParametersHNSW` for HNSW: faiss 1.8 raises "params type
invalid" for a plain `SearchParameters`), so the same code runs on faiss 1.8 and 1.15.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from . import defaults

log = logging.getLogger(__name__)

FLAT_MAX = defaults.EXACT_MAX_CHIPS  # exact index up to this many chips, HNSW above
HNSW_M = 32
# faiss's default of 40 leaves some clusters unreachable: on 250k clustered vectors, queries
# with recall@10 = 0 even at efSearch 256 (unfiltered and filtered); 100 left none, at twice
# the build time (53 s of CPU for 250k x 64), which is small beside embedding the chips.
EF_CONSTRUCTION = 100
FLAT = "IDMap2,Flat"
HNSW = f"IDMap2,HNSW{HNSW_M}"

# efSearch of an unfiltered HNSW search; a filtered one uses EF_BASE / selectivity. Measured on
# 250k clustered vectors: filtered recall@10 >= 0.95 needs efSearch x selectivity of about 150.
EF_BASE = 256
EF_MAX = 4096  # beyond this a filtered walk costs more than reading the allowed vectors
# One HNSW step (per unit of efSearch, per query) costs about as much as reading and scoring
# this many allowed vectors (measured: 1.5-4 us per step vs 0.1-0.2 us per vector, d = 64).
EXACT_PER_EF = 16
CHUNK_ROWS = 16_384  # exact search reads the allowed vectors in blocks: bounded memory
PAD_SCORE = -np.finfo(np.float32).max  # what faiss returns where fewer than k exist


def factory_for(count: int, flat_max: int = FLAT_MAX) -> str:
    """The index type (as faiss's factory string names it) for `count` vectors."""
    return FLAT if count <= flat_max else HNSW


def new_index(dim: int, count: int, flat_max: int = FLAT_MAX) -> tuple[faiss.Index, str]:
    """An empty inner-product index for `count` vectors with ids, and its type's name."""
    name = factory_for(count, flat_max)
    if name == FLAT:
        inner = faiss.IndexFlatIP(dim)
    else:
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = EF_CONSTRUCTION
    # faiss's Python wrapper keeps `inner` alive as long as the ID map.
    return faiss.IndexIDMap2(inner), name


def write_vectors(
    path: Path | str, vectors: np.ndarray, ids: np.ndarray, flat_max: int = FLAT_MAX
) -> str:
    """Write the index of `vectors` (L2-normalised) with chip `ids` to `path`; its type's name."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index, name = new_index(vectors.shape[1], len(ids), flat_max)
    if len(ids):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    faiss.write_index(index, str(path))
    return name


class VectorSearch:
    """Top-k inner-product search over a faiss index, optionally limited to allowed ids."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index  # owns everything below: the storage view lives as long as it
        self.n = int(index.ntotal)
        self.dim = int(index.d)
        if isinstance(index, (faiss.IndexIDMap2, faiss.IndexIDMap)):
            self.inner = faiss.downcast_index(index.index)
            self.row_ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        else:
            self.inner = index
            self.row_ids = np.arange(self.n, dtype=np.int64)
        # id -> row: a dense table when ids are compact (chip ids are grid positions), else a
        # sorted copy to bisect; either answers for 100k ids in a few ms.
        self._row_of_id = None
        top = int(self.row_ids.max()) + 1 if self.n else 0
        if self.n and self.row_ids.min() >= 0 and top <= 8 * self.n + 1024:
            self._row_of_id = np.full(top, -1, np.int64)
            self._row_of_id[self.row_ids] = np.arange(self.n)
        else:
            self._order = np.argsort(self.row_ids, kind="stable")
            self._sorted_ids = self.row_ids[self._order]
        self.kind, storage = "other", None
        if isinstance(self.inner, faiss.IndexHNSWFlat):
            self.kind, storage = "hnsw", faiss.downcast_index(self.inner.storage)
        elif isinstance(self.inner, faiss.IndexFlat):
            self.kind, storage = "flat", self.inner
        self._vectors = None
        if storage is not None and self.n:
            self._vectors = faiss.rev_swig_ptr(storage.get_xb(), self.n * self.dim).reshape(
                self.n, self.dim
            )

    # ------------------------------------------------------------ planning

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the distinct `ids` that the index holds (others are dropped)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids) or not self.n:
            return np.zeros(0, np.int64)
        if self._row_of_id is not None:
            ids = ids[(ids >= 0) & (ids < len(self._row_of_id))]
            rows = self._row_of_id[ids]
            rows = rows[rows >= 0]
        else:
            pos = np.minimum(np.searchsorted(self._sorted_ids, ids), self.n - 1)
            rows = self._order[pos[self._sorted_ids[pos] == ids]]
        mask = np.zeros(self.n, bool)
        mask[rows] = True
        return np.flatnonzero(mask)  # sorted, each row once

    def plan(self, allowed: int, k: int, queries: int = 1) -> tuple[str, int]:
        """How a search limited to `allowed` chips runs: ("exact", 0), reading just the allowed
        vectors, or ("index", efSearch), the index's own search with a selector."""
        if self.kind == "flat":
            # Exact either way: reading few allowed vectors beats scanning the whole index.
            return ("exact", 0) if allowed * 4 <= self.n else ("index", 0)
        if self.kind != "hnsw":
            return "exact", 0  # an index type whose search this module cannot widen
        ef = math.ceil(max(EF_BASE, k) * self.n / max(allowed, 1))
        if ef > EF_MAX or allowed <= EXACT_PER_EF * ef * queries:
            return "exact", 0
        return "index", ef

    # ------------------------------------------------------------ search

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], chip ids [Q, k]); -1 and faiss's lowest score where fewer exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.n)) if self.n else max(1, int(k))
        if allowed_ids is None:
            return self._unfiltered(q, k)
        rows = self.rows_of(allowed_ids)
        if len(rows) == self.n:
            return self._unfiltered(q, k)
        how, ef = self.plan(len(rows), k, len(q))
        if how == "index":
            scores, ids = self._selected(q, k, rows, ef)
            want = min(k, len(rows))
            if (ids[:, :want] >= 0).all():
                return scores, ids
            log.debug("filtered %s search came back short; answering exactly", self.kind)
        return self._exact(q, k, rows)

    def _unfiltered(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(EF_BASE, k))
            return self.index.search(q, k, params=params)
        return self.index.search(q, k)

    def _selected(
        self, q: np.ndarray, k: int, rows: np.ndarray, ef: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The inner index searched with a selector over its rows."""
        mask = np.zeros(self.n, bool)
        mask[rows] = True
        bitmap = np.packbits(mask, bitorder="little")  # bit i % 8 of byte i // 8, as faiss reads
        sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        else:
            params = faiss.SearchParameters(sel=sel)
        scores, found = self.inner.search(q, k, params=params)
        del bitmap  # kept alive until here: the selector points into it
        ids = np.where(found >= 0, self.row_ids[np.maximum(found, 0)], -1)
        return scores, ids

    def _allowed_vectors(self, rows: np.ndarray) -> np.ndarray:
        if self._vectors is not None:
            return self._vectors[rows]
        return self.inner.reconstruct_batch(rows)  # raises for types that cannot reconstruct

    def _exact(self, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nq = len(q)
        scores = np.full((nq, k), PAD_SCORE, np.float32)
        ids = np.full((nq, k), -1, np.int64)
        m = len(rows)
        if not m:
            return scores, ids
        s = np.empty((nq, m), np.float32)
        for a in range(0, m, CHUNK_ROWS):
            b = min(m, a + CHUNK_ROWS)
            s[:, a:b] = q @ self._allowed_vectors(rows[a:b]).T
        take = min(k, m)
        if take < m:
            top = np.argpartition(-s, take - 1, axis=1)[:, :take]
        else:
            top = np.broadcast_to(np.arange(m), (nq, m))
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :take] = np.take_along_axis(top_s, order, axis=1)
        ids[:, :take] = self.row_ids[rows[top]]
        return scores, ids
