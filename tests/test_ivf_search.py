"""Search on IVF indexes (the engine's own above the exact limit, and geobridge_scale's merged
on disk): region-filtered results are what exact search over the allowed chips returns.

The data are test_filtered_search's clustered vectors laid out as a grid's chips (neighbouring
ids share land cover); "exact" is inner product over the original float32 vectors, so SQ8's
rounding is part of what the recall bound allows.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from pyproj import CRS
from test_filtered_search import (
    N,
    clustered,
    efforts_at_full_recall,
    exact_ids,
    grid_vectors,
    plans_at_full_recall,
    queries_for,
    recall,
)
from test_scale import merged_on_disk

from geobridge_qgis.core import chipid
from geobridge_qgis.core import search as S
from geobridge_qgis.core.index import Index
from geobridge_qgis.core.locate import locate

D, K = 64, 10


@pytest.fixture(scope="module")
def ivf(tmp_path_factory):
    x, ids = grid_vectors()
    path = tmp_path_factory.mktemp("ivf") / "vectors.faiss"
    assert S.write_vectors(path, x, ids) == "IVF1024,SQ8"  # the engine's choice at 250k
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    return S.VectorSearch(index), x, ids


def test_engine_ivf_opens_memory_mapped(ivf):
    searcher, _, _ = ivf
    lists = faiss.downcast_InvertedLists(searcher.ivf.invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)  # the lists stay in the file
    assert searcher.kind == "ivf" and searcher.nprobe == S.ivf_nprobe(1024)


def test_unfiltered_ivf_search(ivf):
    searcher, x, ids = ivf
    rng = np.random.default_rng(7)
    rows = np.arange(N)
    q = queries_for(x, rows, rng)
    _, found = searcher.search(q, K)
    assert recall(found, exact_ids(x, ids, rows, q, K)) >= 0.95


def test_filtered_ivf_search_matches_exact_search(ivf):
    searcher, x, ids = ivf
    plans = plans_at_full_recall(searcher, x, ids, np.random.default_rng(8))
    # Both ways are exercised: small sets by the lists holding them, large by a widened scan.
    assert plans == {10: "exact", 100: "exact", 1_000: "exact", 10_000: "index",
                     100_000: "index"}  # fmt: skip


def test_list_scan_widens_with_selectivity(ivf, monkeypatch):
    """With the exact way switched off, the widened scan alone holds recall as the allowed
    share shrinks 10x, because nprobe grows with it."""
    searcher, x, ids = ivf
    monkeypatch.setattr(S, "IVF_EXACT_ROWS", 0)
    probes = efforts_at_full_recall(searcher, x, ids, np.random.default_rng(9))
    assert probes[0] >= 1.7 * probes[1] and probes[1] > searcher.nprobe


def test_short_scans_are_answered_exactly(ivf):
    """Allowed chips the widened scan cannot reach (one list's members, while the scan visits
    the lists nearest the query) still come back: the exact way takes over."""
    searcher, x, ids = ivf
    searcher._ivf_directory()
    lists = searcher._lists
    far = np.flatnonzero(lists == lists[0])[:50]  # chips of one list only
    allowed = np.concatenate([searcher.row_ids[far], ids[:20_000]])
    q = x[N - 5 :]  # queries far from the run of allowed ids
    _, found = searcher.search(q, K, allowed)
    assert (found >= 0).all() and np.isin(found, allowed).all()
    rows = searcher.rows_of(allowed)
    truth = searcher._ivf_exact(q, K, allowed)[1]
    assert recall(found, truth) >= 0.95 and len(rows) == len(np.unique(allowed))


def _merged(tmp_path: Path, x: np.ndarray, ids: np.ndarray, factory: str) -> faiss.Index:
    from geobridge_scale import ivf as scale_ivf

    return scale_ivf.open_ondisk(merged_on_disk(tmp_path, x, ids, factory, 20_000, 4))


def test_merged_ondisk_index_answers_a_region_filtered_locate(tmp_path):
    """An index merged on disk by geobridge_scale (Morton chip ids, lists memory-mapped from
    the ivfdata file) answers a region-limited `locate` with the candidates of an exact index
    of the same chips."""
    rng = np.random.default_rng(13)
    side = 200
    kx, ky = np.meshgrid(np.arange(side), np.arange(side))
    ids = chipid.encode(0, kx.ravel(), ky.ravel())  # sparse, spatially ordered ids
    x = clustered(side * side, D, rng)
    merged = _merged(tmp_path, x, ids, "IVF64,SQ8")
    assert isinstance(faiss.downcast_InvertedLists(merged.invlists), faiss.OnDiskInvertedLists)
    flat, _ = S.new_index(D, len(ids), flat_max=len(ids))
    flat.add_with_ids(x, ids)
    sizes, overlap = (100.0,), 0.5
    _, cx, cy = chipid.centres(ids, sizes, overlap)
    crs = CRS.from_epsg(32633).to_wkt()

    def index_of(fi, factory):
        manifest = {"grid": {"crs_wkt": crs, "overlap": overlap}, "factory": factory,
                    "index_id": factory, "model_id": "m"}  # fmt: skip
        return Index(Path("."), manifest, fi, ids, np.full(len(ids), 100.0), cx, cy, cx, cy)

    approx, exact = index_of(merged, "IVF64,SQ8"), index_of(flat, "IDMap2,Flat")
    for share in (0.01, 0.3):  # the exact way and the widened scan
        half = (cx.max() - cx.min()) * np.sqrt(share) / 2
        mid_x, mid_y = np.median(cx), np.median(cy)
        inside = (np.abs(cx - mid_x) <= half) & (np.abs(cy - mid_y) <= half)
        allowed = ids[inside]
        q = queries_for(x, np.flatnonzero(inside), rng)[:3]
        a = locate(approx, q, 50.0, top_k=5, heatmap=False, allowed=allowed)
        b = locate(exact, q, 50.0, top_k=5, heatmap=False, allowed=allowed)
        assert len(a.candidates) == 5
        assert [c.chip_ids[0] for c in a.candidates] == [c.chip_ids[0] for c in b.candidates]
        _, found = approx.search(q, K, allowed)
        truth = exact_ids(x, ids, np.flatnonzero(inside), q, K)
        assert np.isin(found, allowed).all() and recall(found, truth) >= 0.95, share
