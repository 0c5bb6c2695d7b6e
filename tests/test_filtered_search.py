"""Region and GPS-limited search return what exact search over the allowed chips would.

The index is the engine's own approximate index (250,000 vectors, above the exact-index size),
written by the engine's index writer, over clustered vectors laid out as a grid's chips are:
neighbouring chip ids share land cover, so a region is a few runs of ids of a few kinds.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from pyproj import CRS

from geobridge_qgis.core import search as S
from geobridge_qgis.core.index import Index
from geobridge_qgis.core.locate import locate

N, D, K = 250_000, 64, 10
SIZES = (10, 100, 1_000, 10_000, 100_000)


def clustered(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors in two levels of clusters (kinds of land cover, then variants of each),
    in runs of 100 consecutive ids with a fifth of the chips of some other variant."""
    kinds = rng.standard_normal((40, d)).astype(np.float32)
    variants = kinds[rng.integers(0, 40, 2_500)] + 0.7 * rng.standard_normal((2_500, d))
    label = np.repeat(np.arange(2_500), n // 2_500)
    label = np.where(rng.random(n) < 0.2, rng.integers(0, 2_500, n), label)
    x = variants[label] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def grid_vectors() -> tuple[np.ndarray, np.ndarray]:
    """The N clustered vectors and their chip ids (not row numbers), the same every call."""
    x = clustered(N, D, np.random.default_rng(5))
    return x, np.arange(N, dtype=np.int64) * 3 + 11


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    x, ids = grid_vectors()
    path = tmp_path_factory.mktemp("filtered") / "vectors.faiss"
    # HNSW was the engine's choice above the exact limit: its indexes are still searched.
    assert S.write_vectors(path, x, ids, factory=S.HNSW) == "IDMap2,HNSW32"
    index = faiss.read_index(str(path))
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat)
    return S.VectorSearch(index), x, ids


def allowed_sets(rng: np.random.Generator):
    """Per size: a random scatter and a contiguous run of rows (a region)."""
    for m in SIZES:
        yield m, "scattered", np.sort(rng.choice(N, m, replace=False))
        start = int(rng.integers(0, N - m))
        yield m, "region", np.arange(start, start + m)


def queries_for(x: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photos of places inside the allowed set and of places anywhere."""
    near = np.concatenate([rng.choice(rows, 6), rng.choice(len(x), 6)])
    q = x[near] + 0.5 / np.sqrt(x.shape[1]) * rng.standard_normal((len(near), x.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_ids(x, ids, rows, q, k) -> np.ndarray:
    s = q @ x[rows].T
    return ids[rows[np.argsort(-s, axis=1)[:, :k]]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)])
    )


def check(searcher, x, ids, rows, q) -> float:
    scores, found = searcher.search(q, K, ids[rows])
    want = min(K, len(rows))
    assert found.shape == (len(q), K)
    assert (found[:, :want] >= 0).all() and (found[:, want:] == -1).all()  # k results
    assert np.isin(found[:, :want], ids[rows]).all()  # only allowed chips
    assert all(len(set(r[:want])) == want for r in found)
    assert (np.diff(scores[:, :want], axis=1) <= 1e-6).all()  # best first
    return recall(found[:, :want], exact_ids(x, ids, rows, q, want))


def plans_at_full_recall(searcher, x, ids, rng: np.random.Generator) -> dict[int, str]:
    """Every allowed set (`allowed_sets`) searched and checked: recall@K >= 0.95 against exact
    search over the allowed ids. Returns how each size was answered ("exact" or "index")."""
    plans = {}
    for m, kind, rows in allowed_sets(rng):
        plans[m] = searcher.plan(m, K, 1)[0]
        r = check(searcher, x, ids, rows, queries_for(x, rows, rng))
        assert r >= 0.95, (m, kind, r)
    return plans


def efforts_at_full_recall(searcher, x, ids, rng: np.random.Generator) -> list[int]:
    """Regions of 10,000 and 100,000 rows, each answered by the index itself (the exact way
    switched off by the caller) at recall@K >= 0.95: the search effort (efSearch or nprobe)
    each was given."""
    efforts = []
    for m in (10_000, 100_000):
        start = int(rng.integers(0, N - m))
        rows = np.arange(start, start + m)
        how, effort = searcher.plan(m, K, 1)
        assert how == "index"
        efforts.append(effort)
        assert check(searcher, x, ids, rows, queries_for(x, rows, rng)) >= 0.95, m
    return efforts


def test_filtered_search_matches_exact_search(big):
    searcher, x, ids = big
    plans = plans_at_full_recall(searcher, x, ids, np.random.default_rng(8))
    # Both ways of answering are exercised: small sets exactly, the largest by the graph walk.
    assert plans == {10: "exact", 100: "exact", 1_000: "exact", 10_000: "exact",
                     100_000: "index"}  # fmt: skip


def test_graph_walk_widens_with_selectivity(big, monkeypatch):
    """With exact search switched off, the HNSW walk alone holds recall as the allowed share
    shrinks 10x, because efSearch grows with it."""
    searcher, x, ids = big
    monkeypatch.setattr(S, "EXACT_PER_EF", 0)
    monkeypatch.setattr(S, "EF_MAX", 10_000)
    efs = efforts_at_full_recall(searcher, x, ids, np.random.default_rng(9))
    assert efs[0] >= 9 * efs[1]


def test_plain_selector_at_default_effort_misses(big):
    """What the engine did before: an id selector through the ID map at faiss's default
    efSearch. Kept as evidence that the test data makes a naive filtered walk fail."""
    searcher, x, ids = big
    rng = np.random.default_rng(10)
    rows = np.sort(rng.choice(N, 1_000, replace=False))
    q = queries_for(x, rows, rng)
    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(ids[rows]), efSearch=16)
    _, found = searcher.index.search(q, K, params=params)
    assert recall(found, exact_ids(x, ids, rows, q, K)) < 0.5


def test_locate_in_a_region_gives_the_exact_candidates(big):
    """End to end: a region-limited `locate` on the approximate index names the same
    candidates as on an exact index of the same chips."""
    searcher, x, ids = big
    flat, _ = S.new_index(D, N, flat_max=N)
    flat.add_with_ids(x, ids)
    side = int(np.sqrt(N)) + 1
    cx = 500_000.0 + 50.0 * (np.arange(N) % side)
    cy = 5_500_000.0 + 50.0 * (np.arange(N) // side)
    sizes = np.full(N, 100.0)
    crs = CRS.from_epsg(32633).to_wkt()

    def index_of(fi, factory):
        manifest = {"grid": {"crs_wkt": crs, "overlap": 0.5}, "factory": factory,
                    "index_id": factory, "model_id": "m"}  # fmt: skip
        return Index(Path("."), manifest, fi, ids, sizes, cx, cy, cx * 0, cy * 0)

    approx, exact = index_of(searcher.index, "IDMap2,HNSW32"), index_of(flat, "IDMap2,Flat")
    rng = np.random.default_rng(11)
    for m in (1_000, 100_000):
        start = int(rng.integers(0, N - m))
        allowed = ids[start : start + m]
        q = queries_for(x, np.arange(start, start + m), rng)[:2]
        a = locate(approx, q, 50.0, top_k=5, heatmap=False, allowed=allowed)
        b = locate(exact, q, 50.0, top_k=5, heatmap=False, allowed=allowed)
        assert len(a.candidates) == 5
        assert [c.chip_ids[0] for c in a.candidates] == [c.chip_ids[0] for c in b.candidates]


@pytest.mark.parametrize("spread", [1, 10**6])  # compact chip ids, and ids far apart
def test_small_indexes_and_edge_cases(tmp_path, spread):
    rng = np.random.default_rng(12)
    x = clustered(2_500, 16, rng)
    ids = np.arange(2_500, dtype=np.int64) * spread + 100
    a, b = int(ids[3]), int(ids[5])
    for n, factory in enumerate((S.FLAT, S.HNSW, S.factory_for(len(ids), flat_max=0))):
        path = tmp_path / f"v{n}.faiss"
        S.write_vectors(path, x, ids, factory=factory)
        s = S.VectorSearch(faiss.read_index(str(path)))
        q = x[:3]
        scores, found = s.search(q, 10, np.array([b, a, a, 7, -5]))  # repeats, unknown ids
        assert all(set(r[:2]) == {a, b} for r in found) and (found[:, 2:] == -1).all()
        assert (scores[:, 2:] == S.PAD_SCORE).all()
        assert s.search(q, 10, np.zeros(0, np.int64))[1].tolist() == [[-1] * 10] * 3
        full = s.search(q, 5, ids)  # everything allowed: the unfiltered search
        assert (full[1][:, 0] == ids[:3]).all()
        half = ids[::2]
        _, found = s.search(q, 5, half)
        assert np.isin(found, half).all()
        assert recall(found, exact_ids(x, ids, np.arange(0, 2_500, 2), q, 5)) >= 0.95
