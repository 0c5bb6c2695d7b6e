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
- many allowed chips on an IVF index (the engine's own above the exact limit, or one merged on
  disk by geobridge_scale): the list scan with an id selector and nprobe widened by
  share**-1/4 (a region's nearest chips lie in more lists than the unfiltered nearest, but
  far fewer than 1/share more: measured on realistic embeddings, the filtered recall at the
  unfiltered nprobe is within 0.02 of the unfiltered one); few allowed chips: exactly, by
  scanning every list that holds one of them with the selector (each allowed chip's code is
  scored, and nothing else: exact over the decoded SQ8 vectors, which are the index's vectors);
- any row that still comes back with fewer results than it should is answered exactly.

Above the exact limit the engine builds IVF with SQ8 codes (tools/bench_search.py at 1e6 x 768
on realistic embeddings: HNSW32 needs efSearch 1024 for recall@10 0.98 unfiltered and does not
reach 0.95 on a 1 % region even there, takes 6 minutes to build and 3.3 kB per vector; IVF2048,
SQ8 reaches 0.95-0.97 filtered or not at nprobe 64-128 in 2-9 ms, builds in 3 minutes, holds
776 bytes per vector and can be memory-mapped).

Selectors are passed in the parameter class that index type expects (`SearchParametersHNSW`
for HNSW, inside the ID map over its row numbers; `SearchParametersIVF` for IVF, over chip ids:
faiss 1.8 raises "params type invalid" for a plain `SearchParameters`), so the same code runs
on faiss 1.8 and 1.15.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from . import defaults
from .ivf_search import IVFMixin

log = logging.getLogger(__name__)

FLAT_MAX = defaults.EXACT_MAX_CHIPS  # exact index up to this many chips, IVF above
HNSW_M = 32
# faiss's default of 40 leaves some clusters unreachable: on 250k clustered vectors, queries
# with recall@10 = 0 even at efSearch 256 (unfiltered and filtered); 100 left none, at twice
# the build time (53 s of CPU for 250k x 64), which is small beside embedding the chips.
EF_CONSTRUCTION = 100
FLAT = "IDMap2,Flat"
HNSW = f"IDMap2,HNSW{HNSW_M}"  # the type above the exact limit before IVF; still searched
IVF_CODES = "SQ8"
IVF_TRAIN_PER_LIST = 40  # k-means wants ~40 points per centroid; more buys little
IVF_KMEANS_ITERATIONS = 10  # faiss's 25 moves the centroids no further here
# Lists scanned unfiltered: 2 sqrt(nlist). Measured at 1e6 x 768 (IVF2048,SQ8, realistic
# embeddings, tools/bench_search.py): nprobe 64 gives recall@10 0.954, 128 gives 0.974.
NPROBE_PER_SQRT_LIST = 2.0
# Allowed chips up to this many (per query) are answered exactly: every list holding one of
# them is scanned with the selector (ivf_search), so each allowed chip's code is scored.
IVF_EXACT_ROWS = 4_096
# A filtered scan visits nprobe / share**IVF_WIDEN_POWER lists. Measured at 1e6 (IVF2048,SQ8):
# a region's recall at the unfiltered nprobe is 0.01-0.02 below the unfiltered recall, so the
# widening can be gentle; each halving of the share adds ~19 % more lists.
IVF_WIDEN_POWER = 0.25

# efSearch of an unfiltered HNSW search; a filtered one uses EF_BASE / selectivity. Measured on
# 250k clustered vectors: filtered recall@10 >= 0.95 needs efSearch x selectivity of about 150.
EF_BASE = 256
EF_MAX = 4096  # beyond this a filtered walk costs more than reading the allowed vectors
# One HNSW step (per unit of efSearch, per query) costs about as much as reading and scoring
# this many allowed vectors (measured: 1.5-4 us per step vs 0.1-0.2 us per vector, d = 64).
EXACT_PER_EF = 16
CHUNK_ROWS = 16_384  # exact search reads the allowed vectors in blocks: bounded memory
PAD_SCORE = -np.finfo(np.float32).max  # what faiss returns where fewer than k exist


def ivf_nlist(count: int) -> int:
    """IVF lists for `count` vectors: about 2 sqrt(N) (lists of ~500 at 1e6), a power of two,
    and never fewer than IVF_TRAIN_PER_LIST vectors per list (k-means needs them)."""
    nlist = min(65536, 2 ** round(math.log2(2 * math.sqrt(max(count, 1)))))
    return int(max(1, min(nlist, count // IVF_TRAIN_PER_LIST)))


def ivf_nprobe(nlist: int) -> int:
    """Lists an unfiltered search scans (measured: see NPROBE_PER_SQRT_LIST)."""
    return int(min(nlist, max(8, math.ceil(NPROBE_PER_SQRT_LIST * math.sqrt(nlist)))))


def factory_for(count: int, flat_max: int = FLAT_MAX) -> str:
    """The index type (as faiss's factory string names it) for `count` vectors."""
    return FLAT if count <= flat_max else f"IVF{ivf_nlist(count)},{IVF_CODES}"


def new_index(dim: int, count: int, flat_max: int = FLAT_MAX) -> tuple[faiss.Index, str]:
    """An empty inner-product index for `count` vectors with ids, and its type's name (an IVF
    index still needs training)."""
    name = factory_for(count, flat_max)
    return index_of_type(dim, name), name


def index_of_type(dim: int, name: str) -> faiss.Index:
    """An empty index of the type `name` (FLAT, HNSW or IVF<n>,<Flat|SQ8>), from classes."""
    if name == FLAT:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))  # the wrapper keeps its inner alive
    if name == HNSW:
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = EF_CONSTRUCTION
        return faiss.IndexIDMap2(inner)
    head, _, codes = name.partition(",")
    if not (head.startswith("IVF") and head[3:].isdigit() and codes in ("Flat", "SQ8")):
        raise ValueError(f"index type {name}: not one the engine builds")
    quantizer, nlist, ip = faiss.IndexFlatIP(dim), int(head[3:]), faiss.METRIC_INNER_PRODUCT
    if codes == "Flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    else:
        qt = faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qt, ip)
    index.own_fields = True
    quantizer.this.disown()  # freed with the index
    index.cp.niter = IVF_KMEANS_ITERATIONS
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST * 4
    index.nprobe = ivf_nprobe(nlist)
    return index


def write_vectors(
    path: Path | str,
    vectors: np.ndarray,
    ids: np.ndarray,
    flat_max: int = FLAT_MAX,
    factory: str | None = None,
) -> str:
    """Write the index of `vectors` (L2-normalised) with chip `ids` to `path`; its type's name.

    An IVF index is trained on a fixed sample of the vectors (IVF_TRAIN_PER_LIST per list)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    name = factory or factory_for(len(ids), flat_max)
    index = index_of_type(vectors.shape[1], name)
    if not index.is_trained:
        want = min(len(vectors), index.nlist * IVF_TRAIN_PER_LIST)
        sample = np.sort(np.random.default_rng(0).choice(len(vectors), want, replace=False))
        log.info("training %s on %d vectors", name, want)
        index.train(vectors[sample])
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    for a in range(0, len(ids), 65_536):  # bounded temporary memory while encoding
        index.add_with_ids(vectors[a : a + 65_536], ids[a : a + 65_536])
    faiss.write_index(index, str(path))
    return name


class VectorSearch(IVFMixin):
    """Top-k inner-product search over a faiss index, optionally limited to allowed ids."""

    def __init__(self, index: faiss.Index, nprobe: int | None = None) -> None:
        self.index = index  # owns everything below: the storage view lives as long as it
        self.n = int(index.ntotal)
        self.dim = int(index.d)
        self.kind, storage, self.ivf = "other", None, None
        if isinstance(index, faiss.IndexIVF):
            # Ids live in the inverted lists (perhaps memory-mapped from disk): read only when
            # a filtered search needs them, so opening stays instant at any size.
            self.kind, self.ivf = "ivf", index
            # The builder's nprobe, saved in the file (the engine's: ivf_nprobe; geobridge_scale's
            # its own), unless left at faiss's default of 1.
            stored = int(index.nprobe)
            self.nprobe = int(nprobe or (stored if stored > 1 else ivf_nprobe(index.nlist)))
            self._directory: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
            self._sel_key: tuple | None = None
            self._vectors = None
            return
        if isinstance(index, (faiss.IndexIDMap2, faiss.IndexIDMap)):
            self.inner = faiss.downcast_index(index.index)
            self.row_ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        else:
            self.inner = index
            self.row_ids = np.arange(self.n, dtype=np.int64)
        self._index_rows(self.row_ids)
        if isinstance(self.inner, faiss.IndexHNSWFlat):
            self.kind, storage = "hnsw", faiss.downcast_index(self.inner.storage)
        elif isinstance(self.inner, faiss.IndexFlat):
            self.kind, storage = "flat", self.inner
        self._vectors = None
        if storage is not None and self.n:
            self._vectors = faiss.rev_swig_ptr(storage.get_xb(), self.n * self.dim).reshape(
                self.n, self.dim
            )

    def _index_rows(self, row_ids: np.ndarray) -> None:
        # id -> row: a dense table when ids are compact (chip ids are grid positions), else a
        # sorted copy to bisect; either answers for 100k ids in a few ms.
        self.row_ids = row_ids
        self._row_of_id = None
        top = int(row_ids.max()) + 1 if self.n else 0
        if self.n and row_ids.min() >= 0 and top <= 8 * self.n + 1024:
            self._row_of_id = np.full(top, -1, np.int64)
            self._row_of_id[row_ids] = np.arange(self.n)
        else:
            self._order = np.argsort(row_ids, kind="stable")
            self._sorted_ids = row_ids[self._order]

    # ------------------------------------------------------------ planning

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the distinct `ids` that the index holds (others are dropped)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids) or not self.n:
            return np.zeros(0, np.int64)
        if self.kind == "ivf":
            self._ivf_directory()  # rows are positions in the lists' directory
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
        if self.kind == "ivf":
            nlist = self.ivf.nlist
            share = max(allowed, 1) / max(self.n, 1)
            nprobe = math.ceil(self.nprobe * share**-IVF_WIDEN_POWER)
            if allowed <= IVF_EXACT_ROWS * queries or nprobe >= nlist:
                return "exact", 0
            return "index", nprobe
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
        if self.kind == "ivf":
            return self._ivf_filtered(q, k, np.asarray(allowed_ids, np.int64).ravel())
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
        if self.kind == "ivf":
            return self.index.search(q, k, params=faiss.SearchParametersIVF(nprobe=self.nprobe))
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
