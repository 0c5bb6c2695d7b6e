"""Search at 1e5 and 1e6 chips of 768 dims: exact (numpy, faiss) and approximate candidates.
Over 500 lines because one command runs the sweep and the engine-path step on one cached gallery.

Figures only, never asserted: `python tools/bench_search.py [--quick] [--n 1e5,1e6]` writes
out/bench/search/result.json; `tools/bench_engine.py` runs the parts its keys need.

Embeddings that look like real ones. Uniform random vectors are the worst case of every
approximate index and say nothing about chip embeddings, so the gallery is generated from the
demo model's own embeddings (`real_embeddings`):

- real chips: the demo bundle's satellite embeddings (128 dims, no flip augmentation) of the
  demo world's chips on a dense grid (60, 100, 150 and 200 m, overlap 0.6: 11,136 chips of a
  2 km world; --quick: the default grid, 2,302 chips);
- real queries: its drone embeddings of the world's 41 drone photos in 4 rotations (cross-view
  queries, as the engine runs them), the first 100 of the 164;
- spread: each synthetic chip is a real chip plus a real local difference, the gap between
  another real chip and its nearest real neighbour (so synthetic chips spread around real ones
  as neighbouring chips do), normalised;
- 768 dims: lifted by a fixed random orthonormal map (which keeps every cosine) plus a small
  isotropic part in all 768 dims (TAIL = 10 % of the energy), because a real 768-d embedding
  is not confined to a 128-d subspace; queries get their own tail;
- geography: synthetic chip `id` is chip `id % N` of a copy (tile `id // N`) of the 2 km world;
  tiles lie side by side on a square grid, so a region filter is a box of that plane.

`--skip exact,ann` runs only the engine's own path (`bench_engine`): the index type the engine
writes above the exact limit, opened memory-mapped, searched through core.search.VectorSearch
with and without a region filter (p50/p95 latency, recall@10).

Every figure is the median over the queries of one query at a time, with faiss (and numpy's
OpenBLAS) on the threads stated; recall@10 is against exact inner-product search over the same
(filtered) vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

D = 768
K = 10
TAIL = 0.10  # share of a synthetic vector's energy outside the real embeddings' subspace
WORLD_M = 2000.0
REAL_SIZES = (60.0, 100.0, 150.0, 200.0)
REAL_OVERLAP = 0.6
CHUNK = 50_000


def cores() -> int:
    return len(os.sched_getaffinity(0))


# ---------------------------------------------------------------- embeddings


def real_embeddings(cache: Path, quick: bool = False) -> dict[str, np.ndarray]:
    """The demo model's chip and photo embeddings of the demo world (cached in `cache`)."""
    path = cache / f"real-embeddings{'-quick' if quick else ''}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from model_export.evaluate import read_world

    from geobridge_qgis.core import service
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.index import Index
    from geobridge_qgis.core.locate import photo_embeddings
    from geobridge_qgis.core.photo import read_photo

    world = ROOT / "resources/demo/world"
    bundle = ROOT / "resources/demo/bundle"
    out = cache / f"real-index{'-quick' if quick else ''}"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        sizes = (100.0, 150.0) if quick else REAL_SIZES
        overlap = 0.5 if quick else REAL_OVERLAP
        request = service.IndexRequest(bundle, str(world / "satellite.tif"), out,
                                       chip_sizes=sizes, overlap=overlap, flip=False)  # fmt: skip
        service.build_index(request, log=lambda s: print(f"  {s}", flush=True))
    index = Index.open(out)
    inner = index.faiss_index.index  # IDMap2's own index: vectors in the order of its ids
    gallery = inner.reconstruct_n(0, inner.ntotal)
    rows = index.row_of(faiss_ids(index))
    enc = Encoders(Bundle.load(bundle))
    w = read_world(world)
    photos = [read_photo(world / "drone" / f) for f in w.files]
    queries = np.concatenate([photo_embeddings(enc, p, "drone") for p in photos])
    data = {"gallery": gallery.astype(np.float32), "queries": queries.astype(np.float32),
            "x": (index.cx[rows] - index.cx.min()).astype(np.float32),
            "y": (index.cy[rows] - index.cy.min()).astype(np.float32)}  # fmt: skip
    np.savez(path, **data)
    return data


def faiss_ids(index) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.faiss_index.id_map)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Synthetic:
    """A deterministic stream of realistic 768-d chip embeddings (see the module's notes)."""

    def __init__(self, real: dict[str, np.ndarray], seed: int = 0, tail: float = TAIL):
        rng = np.random.default_rng(seed)
        g = normalize(real["gallery"])
        self.real, self.n_real, self.seed, self.tail = g, len(g), seed, tail
        self.x, self.y = real["x"], real["y"]
        # Local differences: each real chip minus its nearest other real chip.
        nn = np.empty(len(g), np.int64)
        for s in range(0, len(g), 4096):
            sim = g[s : s + 4096] @ g.T
            sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
            nn[s : s + 4096] = sim.argmax(1)
        self.diffs = g - g[nn]
        q, _ = np.linalg.qr(rng.standard_normal((D, g.shape[1])))
        self.lift = q.astype(np.float32).T  # [128, 768], orthonormal rows
        self.queries = self._to_768(normalize(real["queries"])[:100], rng)

    def _to_768(self, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        tail = normalize(rng.standard_normal((len(v), D), dtype=np.float32))
        out = np.sqrt(1 - self.tail) * (v @ self.lift) + np.sqrt(self.tail) * tail
        return normalize(out).astype(np.float32)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Vectors with ids start..stop-1 (the same whatever the chunking)."""
        out = np.empty((stop - start, D), np.float32)
        for s in range(start - start % CHUNK, stop, CHUNK):
            rng = np.random.default_rng((self.seed, s))
            ids = np.arange(s, s + CHUNK)
            base = self.real[ids % self.n_real]
            noise = self.diffs[rng.integers(0, self.n_real, CHUNK)]
            v = self._to_768(normalize(base + noise), rng)
            a, b = max(start, s), min(stop, s + CHUNK)
            out[a - start : b - start] = v[a - s : b - s]
        return out

    def all(self, n: int) -> np.ndarray:
        return self.chunk(0, n)

    def positions(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Chip centres (m) in the plane of tiles."""
        ids = np.arange(n)
        side = int(np.ceil(np.sqrt(np.ceil(n / self.n_real))))
        tile, chip = ids // self.n_real, ids % self.n_real
        return (tile % side) * WORLD_M + self.x[chip], (tile // side) * WORLD_M + self.y[chip]

    def region(self, n: int, share: float) -> np.ndarray:
        """Ids of the chips in a square box at the middle of the plane holding about `share`
        of the chips."""
        x, y = self.positions(n)
        cx, cy = np.median(x), np.median(y)
        lo, hi = 0.0, float(max(x.max() - x.min(), y.max() - y.min()))
        for _ in range(40):  # bisect the half side for the share wanted
            mid = (lo + hi) / 2
            inside = (np.abs(x - cx) <= mid) & (np.abs(y - cy) <= mid)
            lo, hi = (mid, hi) if inside.mean() < share else (lo, mid)
        return np.flatnonzero((np.abs(x - cx) <= hi) & (np.abs(y - cy) <= hi))


def uniform(n: int, seed: int = 0) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal((n, D), dtype=np.float32))


# ---------------------------------------------------------------- exact


def exact_topk(synth: Synthetic, n: int, queries: np.ndarray, allowed: np.ndarray | None = None):
    """Exact top-K ids [Q, K] over the first n synthetic vectors (optionally only `allowed`)."""
    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.full((len(queries), K), -1, np.int64)
    mask = None
    if allowed is not None:
        mask = np.zeros(n, bool)
        mask[allowed] = True
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        sim = queries @ synth.chunk(s, e).T
        if mask is not None:
            sim[:, ~mask[s:e]] = -np.inf
        cat_s = np.concatenate([best_s, sim], 1)
        cat_i = np.concatenate([best_i, np.broadcast_to(np.arange(s, e), sim.shape)], 1)
        top = np.argpartition(-cat_s, K, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a[a >= 0]) & set(b)) / K for a, b in zip(found, truth, strict=True)])
    )


def per_query_ms(fn, queries: np.ndarray, reps: int = 1) -> float:
    """Median ms of fn(one query [1, D]) over the queries (after one warm-up)."""
    fn(queries[:1])
    times = []
    for _ in range(reps):
        for q in queries:
            t0 = time.perf_counter()
            fn(q[None])
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def batch_ms(fn, queries: np.ndarray, reps: int = 2) -> float:
    fn(queries[:2])
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(queries)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def numpy_topk(xb: np.ndarray, q: np.ndarray) -> np.ndarray:
    s = q @ xb.T
    top = np.argpartition(-s, K, axis=1)[:, :K]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1), 1)


def numpy_fp16_topk(xb16: np.ndarray, q: np.ndarray, block: int = 65536) -> np.ndarray:
    """Exact search over fp16 storage, upcast a block at a time (numpy has no fp16 BLAS)."""
    scores = np.empty((len(q), len(xb16)), np.float32)
    for s in range(0, len(xb16), block):
        scores[:, s : s + block] = q @ xb16[s : s + block].astype(np.float32).T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return top


def _fp16(xb16: np.ndarray, q: np.ndarray, qs: np.ndarray) -> dict:
    return {
        "ms_per_query_1": per_query_ms(lambda x: numpy_fp16_topk(xb16, x), qs[:5]),
        "ms_100_queries": batch_ms(lambda x: numpy_fp16_topk(xb16, x), q, 1),
        "how": "fp16 rows upcast to fp32 in blocks of 65,536, then one matrix product",
    }


def bench_exact(synth: Synthetic, n: int, nq_single: int = 20) -> dict:
    import faiss

    xb = synth.all(n)
    q = synth.queries
    qs = q[:nq_single]
    out: dict = {}
    out["numpy_fp32"] = {"ms_per_query_1": per_query_ms(lambda x: numpy_topk(xb, x), qs),
                         "ms_100_queries": batch_ms(lambda x: numpy_topk(xb, x), q)}  # fmt: skip
    out["numpy_fp16_storage"] = _fp16(xb.astype(np.float16), q, qs)
    index = faiss.IndexFlatIP(D)
    index.add(xb)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        out[f"faiss_flat_threads{threads}"] = {
            "ms_per_query_1": per_query_ms(lambda x: index.search(x, K), qs),
            "ms_100_queries": batch_ms(lambda x: index.search(x, K), q),
        }
    faiss.omp_set_num_threads(cores())
    return out


# ---------------------------------------------------------------- approximate


def build(synth: Synthetic, n: int, factory: str, train_n: int) -> tuple:
    import faiss

    index = faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT)
    if "IVF" in factory:
        faiss.extract_index_ivf(index).cp.niter = KMEANS_ITERATIONS
    t0 = time.perf_counter()
    if not index.is_trained:
        sample = np.random.default_rng(1).choice(n, min(n, train_n), replace=False)
        index.train(synth.chunk(0, n)[np.sort(sample)] if n <= 200_000 else _gather(synth, sample))
    t1 = time.perf_counter()
    for s in range(0, n, CHUNK):
        index.add(synth.chunk(s, min(n, s + CHUNK)))
    t2 = time.perf_counter()
    return index, t1 - t0, t2 - t1


def _gather(synth: Synthetic, ids: np.ndarray) -> np.ndarray:
    ids = np.sort(ids)
    out = []
    for s in range(0, int(ids.max()) + 1, CHUNK):
        sel = ids[(ids >= s) & (ids < s + CHUNK)]
        if len(sel):
            out.append(synth.chunk(s, s + CHUNK)[sel - s])
    return np.concatenate(out)


def _params(index, value, sel=None):
    import faiss

    base = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else None
    inner = base or index
    if isinstance(inner, faiss.IndexHNSW):
        p = faiss.SearchParametersHNSW(efSearch=value, sel=sel)
    else:
        p = faiss.SearchParametersIVF(nprobe=value, sel=sel)
    if base is not None:
        return faiss.IndexRefineSearchParameters(k_factor=4, base_index_params=p)
    return p


def sweep(index, queries, truth, values, sel=None, threads=(1, 2)) -> list[dict]:
    import faiss

    rows = []
    for v in values:
        params = _params(index, v, sel)
        row = {"param": v}
        for t in threads:
            faiss.omp_set_num_threads(t)
            row[f"ms_threads{t}"] = round(
                per_query_ms(lambda x, p=params: index.search(x, K, params=p), queries), 3
            )
        _, found = index.search(queries, K, params=params)
        row["recall_at_10"] = round(recall(found, truth), 4)
        rows.append(row)
    faiss.omp_set_num_threads(cores())
    return rows


CANDIDATES = {
    # factory: (sweep values, training points). Lists of about 500 vectors at 1e6 (1e5: 100).
    "HNSW32": ((32, 64, 128, 256, 512), 0),
    "IVF1024,Flat": ((4, 8, 16, 32, 64, 128), 40_000),
    "IVF1024,SQ8": ((16, 32, 64, 128), 40_000),
    "IVF1024,PQ96x8,RFlat": ((16, 32, 64, 128), 40_000),
    "IVF2048,Flat": ((16, 32, 64, 128, 256), 80_000),
    "IVF2048,SQ8": ((32, 64, 128, 256), 80_000),
    "IVF2048,PQ96x8,RFlat": ((32, 64, 128, 256), 80_000),
}
KMEANS_ITERATIONS = 10  # faiss's default is 25; the centroids barely move after 10 here


def bench_ann(
    synth: Synthetic, n: int, factories: list[str], shares=(0.1, 0.01), save=None
) -> dict:
    """The sweep of each candidate; `save(out)` after each (a long run keeps what it did)."""
    import faiss

    q = synth.queries
    truth = exact_topk(synth, n, q)
    regions = {s: synth.region(n, s) for s in shares}
    region_truth = {s: exact_topk(synth, n, q, ids) for s, ids in regions.items()}
    out: dict = {}
    for factory in factories:
        values, train_n = CANDIDATES[factory]
        if n < 200_000 and "4096" in factory:
            train_n = min(train_n, n)
        print(f"  {factory} at {n:,}: building", flush=True)
        index, train_s, add_s = build(synth, n, factory, train_n)
        row = {
            "train_s": round(train_s, 1),
            "add_s": round(add_s, 1),
            "bytes_per_vector": _bytes(index) / n,
            "unfiltered": sweep(index, q, truth, values),
        }
        for share, ids in regions.items():
            bitmap = np.zeros((n + 7) // 8, np.uint8)
            np.bitwise_or.at(bitmap, ids >> 3, (1 << (ids & 7)).astype(np.uint8))
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
            row[f"region_{share:g}"] = {
                "chips": len(ids),
                "sweep": sweep(index, q, region_truth[share], values, sel, threads=(2,)),
            }
            del sel
        out[factory] = row
        print(json.dumps({factory: row}), flush=True)
        if save:
            save(out)
        del index
    out["exact_subset_region"] = {
        f"{s:g}": _subset_ms(synth, n, ids, q) for s, ids in regions.items()
    }
    return out


def _subset_ms(synth: Synthetic, n: int, ids: np.ndarray, q: np.ndarray) -> dict:
    """Exact search over only the region's vectors, gathered from an fp32 array."""
    xb = _gather(synth, ids)
    return {
        "chips": len(ids),
        "ms_per_query_1": round(per_query_ms(lambda x: numpy_topk(xb, x), q[:20]), 3),
    }


def _bytes(index) -> int:
    import faiss

    return len(faiss.serialize_index(index)) if index.ntotal <= 200_000 else _estimate_bytes(index)


def _estimate_bytes(index) -> int:
    import faiss

    try:
        inv = faiss.extract_index_ivf(index)
        return inv.ntotal * (inv.code_size + 8)
    except RuntimeError:
        return index.ntotal * (D * 4 + 32 * 2 * 4 + 8)


# ---------------------------------------------------------------- the engine's own path


def box_ids(synth: Synthetic, n: int, side_m: float) -> np.ndarray:
    """Ids of the chips centred in a side_m x side_m box at the middle of the plane."""
    x, y = synth.positions(n)
    cx, cy = np.median(x), np.median(y)
    return np.flatnonzero((np.abs(x - cx) <= side_m / 2) & (np.abs(y - cy) <= side_m / 2))


def _latency(fn, queries: np.ndarray) -> tuple[list[float], list[float], np.ndarray]:
    """Per query: wall seconds, CPU seconds of this process, top ids. On a machine shared
    with other jobs the wall time includes waiting for a core; the CPU time is what the query
    costs (one query runs on one thread: faiss parallelises over queries)."""
    fn(queries[:1])  # warm-up: a filter's selector and directory are made once, then kept
    times, cpu, found = [], [], []
    for q in queries:
        c0, t0 = time.process_time(), time.perf_counter()
        _, ids = fn(q[None])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        found.append(ids[0])
    return times, cpu, np.stack(found)


def bench_engine(synth: Synthetic, n: int, work: Path, threads: int = 2) -> dict:
    """The engine's index above the exact limit, as `index` writes it (core.search) and
    `Index.open` maps it, searched through VectorSearch one query at a time: unfiltered, a box
    of about a tenth of the chips, and a 500 m box; p50/p95 ms and recall@10 against exact
    search over the same (allowed) float32 vectors."""
    import faiss

    from geobridge_qgis.core import search as S

    faiss.omp_set_num_threads(threads)
    q = synth.queries
    path = work / f"engine-{n}.faiss"  # kept: a rerun measures again without rebuilding
    t0 = time.perf_counter()
    if path.exists():
        factory, build_s = S.factory_for(n, flat_max=0), None
    else:
        xb = synth.all(n)
        factory = S.write_vectors(path, xb, np.arange(n, dtype=np.int64), flat_max=0)
        build_s = round(time.perf_counter() - t0, 1)
        del xb
    t0 = time.perf_counter()
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    open_ms = 1000 * (time.perf_counter() - t0)
    vs = S.VectorSearch(index)
    out = {"factory": factory, "nprobe": vs.nprobe, "threads": threads,
           "build_s": build_s, "open_ms": round(open_ms, 1),
           "index_mb": round(path.stat().st_size / 2**20, 1),
           "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip
    filters = {"unfiltered": None, "box_10pct": synth.region(n, 0.1),
               "box_500m": box_ids(synth, n, 500.0)}  # fmt: skip
    truths = work / f"engine-{n}-truth.npz"  # exact answers, kept beside the index
    known = dict(np.load(truths)) if truths.exists() else {}
    for name, allowed in filters.items():
        if name not in known:
            known[name] = exact_topk(synth, n, q, allowed)
            np.savez(truths, **known)
        truth = known[name]
        times, cpu, found = _latency(lambda x, a=allowed: vs.search(x, K, a), q)
        row = {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
               "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
               "cpu_p50_ms": round(1000 * float(np.percentile(cpu, 50)), 3),
               "cpu_p95_ms": round(1000 * float(np.percentile(cpu, 95)), 3),
               "recall_at_10": round(recall(found, truth), 4)}  # fmt: skip
        if allowed is not None:
            row["chips"] = len(allowed)
            row["plan"] = list(vs.plan(len(allowed), K, 1))
        out[name] = row
        print(json.dumps({name: row}), flush=True)
    out["load_avg_1_5_15_after"] = [round(v, 2) for v in os.getloadavg()]
    faiss.omp_set_num_threads(cores())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench/search")
    ap.add_argument("--n", default="1e5,1e6", help="gallery sizes (1e5,1e6)")
    ap.add_argument("--factories", default=";".join(CANDIDATES), help="';'-separated")
    ap.add_argument("--skip", default="", help="comma list: exact,ann,engine")
    ap.add_argument("--quick", action="store_true", help="the demo world's default grid only")
    ap.add_argument("--result", default="result.json", help="file name under --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_embeddings(args.out, args.quick)
    synth = Synthetic(real)
    path = args.out / args.result
    res = json.loads(path.read_text()) if path.exists() else {}
    res["embeddings"] = {"real_chips": synth.n_real, "queries": len(synth.queries), "tail": TAIL}
    for n in (int(float(v)) for v in args.n.split(",")):
        key = f"{n:.0e}".replace("+0", "")
        if "exact" not in args.skip:
            print(f"exact at {n:,}", flush=True)
            res.setdefault(key, {})["exact"] = bench_exact(synth, n)
            path.write_text(json.dumps(res, indent=1))
        if "ann" not in args.skip:
            ann = res.setdefault(key, {}).setdefault("ann", {})

            def save(rows: dict, ann=ann) -> None:
                ann.update(rows)
                path.write_text(json.dumps(res, indent=1))

            save(bench_ann(synth, n, args.factories.split(";"), save=save))
        if "engine" not in args.skip:
            print(f"engine index at {n:,}", flush=True)
            res.setdefault(key, {})["engine"] = bench_engine(synth, n, args.out)
            path.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
