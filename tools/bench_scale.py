"""The on-disk IVF index at scale, through the distributed build's own merge path.

N synthetic chip embeddings that look like real ones (below) on a Morton-id grid, cut into 2 km
blocks: each block written as the build writes it (Parquet, fp16), an IVF index trained on a
sample, filled per block, merged on disk (faiss merge_ondisk, in a child process whose peak
memory is measured) and opened memory-mapped. Reported: peak memory of the merge, sizes on
disk, query latency p50/p95 (one query vector at a time, 2 threads, warm page cache), and
recall@10 against an exact search, for several nprobe, unfiltered and region-filtered (a box
of about a tenth of the area: its chips' ids given to the engine's VectorSearch, as `locate`
gives them, which scans with an id selector and nprobe widened for the box's share).

Synthetic embeddings: a real gallery is clustered (land cover), spatially smooth (neighbouring
chips overlap and share content) and of low intrinsic dimension. Each chip is
normalise(class centre of its 1 km cell + texture of its 200 m cell + own noise), class
centres and textures drawn in a 96-dimensional subspace of R^D; queries are stored chips plus
noise to a cosine of about 0.8 with their source (a photo is not its chip).

    python tools/bench_scale.py --n 1000000 --out out/bench/scale

Time on 2 cores is mostly the coarse assignment of every vector (N x lists x D multiply-adds
when filling) and the k-means (40 x lists^2 x D per iteration): at 1e7, `--factory
IVF4096,SQ8` keeps both to minutes, where the default lists for 1e7 (16,384) take hours.
Disk: the fp16 blocks (1.5 kB a vector), the per-block IVF files and the merged index (0.8 kB
a vector each) are all present before the merge ends: ~31 GB at 1e7 x 768.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geobridge_qgis.core import chipid, search  # noqa: E402
from geobridge_scale import blocks, ivf  # noqa: E402

SIZES, OVERLAP = (100.0,), 0.5  # one size class: 50 m stride
BLOCK = 40  # lattice points per block side: 2 km at a 50 m stride


class World:
    """Deterministic synthetic gallery on a side x side lattice, generated block by block."""

    def __init__(self, n: int, dim: int, seed: int = 0):
        self.side = math.ceil(math.sqrt(n))
        self.n, self.dim = n, dim
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.standard_normal((dim, 96)))[0].T.astype(np.float32)  # 96 x D
        self.classes = (rng.standard_normal((64, 96)) @ basis).astype(np.float32)
        self.textures = (rng.standard_normal((4096, 96)) @ basis * 0.6).astype(np.float32)
        self.noise = 8.0 / math.sqrt(dim)  # own detail: neighbours of a cell at cosine ~0.67
        self.seed = seed
        self.nb = math.ceil(self.side / BLOCK)

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, fp16 embeddings) of block b (row-major over blocks)."""
        bx, by = b % self.nb, b // self.nb
        kx, ky = np.meshgrid(np.arange(bx * BLOCK, min(self.side, (bx + 1) * BLOCK)),
                             np.arange(by * BLOCK, min(self.side, (by + 1) * BLOCK)))  # fmt: skip
        kx, ky = kx.ravel(), ky.ravel()
        keep = ky * self.side + kx < self.n
        kx, ky = kx[keep], ky[keep]
        cls = _hash(kx // 20, ky // 20, 1) % len(self.classes)
        tex = _hash(kx // 4, ky // 4, 2) % len(self.textures)
        rng = np.random.default_rng([self.seed, b])
        x = self.classes[cls] + self.textures[tex]
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.noise)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return chipid.encode(0, kx, ky), x.astype(np.float16)


def _hash(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    h = (a.astype(np.uint64) * np.uint64(73856093)) ^ (b.astype(np.uint64) * np.uint64(19349663))
    return ((h ^ np.uint64(salt * 83492791)) * np.uint64(2654435761) >> np.uint64(7)).astype(
        np.int64
    ) & 0x7FFFFFFF


def _queries(world: World, nq: int, rng, box=None) -> tuple[np.ndarray, np.ndarray]:
    out, src = [], []
    while len(out) < nq:
        ids, x = world.block(int(rng.integers(world.nb * world.nb)))
        if not len(ids):
            continue
        if box is not None:
            _, cx, cy = chipid.centres(ids, SIZES, OVERLAP)
            inside = (cx >= box[0]) & (cx <= box[2]) & (cy >= box[1]) & (cy <= box[3])
            ids, x = ids[inside], x[inside]
            if not len(ids):
                continue
        j = int(rng.integers(len(ids)))
        v = x[j].astype(np.float32)
        noise = rng.standard_normal(world.dim).astype(np.float32)
        noise -= noise @ v * v
        noise /= np.linalg.norm(noise)
        q = 0.8 * v + 0.6 * noise  # cosine 0.8 with its source chip
        out.append(q / np.linalg.norm(q))
        src.append(ids[j])
    return np.stack(out), np.asarray(src)


def _merge_child(trained: Path, files: list[Path], folder: Path) -> dict:
    """Merge in a child process: its peak RSS is the merge's."""
    listing = folder / "blocks.txt"
    listing.write_text("\n".join(map(str, files)))
    code = (
        f"import sys, resource; sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path\n"
        "from geobridge_scale import ivf\n"
        f"files = [Path(p) for p in Path({str(listing)!r}).read_text().split()]\n"
        f"ivf.merge(Path({str(trained)!r}), files, Path({str(folder)!r}))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    # Mapped files count in RSS but are page cache the kernel can drop: the memory a merge
    # needs is its anonymous part, polled here; the total (with mapped pages) comes after.
    peak_anon = 0
    while child.poll() is None:
        peak_anon = max(peak_anon, _status_kb(child.pid, "RssAnon"))
        time.sleep(0.05)
    out, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"merge failed ({child.returncode})")
    return {"merge_s": round(time.perf_counter() - t0, 1),
            "merge_peak_anon_mb": round(peak_anon / 1024, 1),
            "merge_peak_rss_incl_mapped_mb": round(int(out.split()[-1]) / 1024, 1)}  # fmt: skip


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768, help="768: vit-l-14's embedding size")
    ap.add_argument("--nlist", type=int, help="IVF lists (default: geobridge_scale.ivf)")
    ap.add_argument("--codes", default="SQ8", help="SQ8, SQfp16, PQ96x8, ...")
    ap.add_argument("--factory", help="IVF<lists>,<codes> (instead of --nlist and --codes)")
    ap.add_argument("--nprobe", default="8,16,32,64,128", help="nprobe values to sweep")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "scale")
    ap.add_argument("--keep", action="store_true", help="keep the index and blocks")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / blocks.EMBEDDINGS).mkdir(parents=True)
    world = World(args.n, args.dim)
    nblocks = world.nb * world.nb
    nlist = args.nlist or ivf.nlist_for(args.n)
    factory = f"IVF{nlist},{args.codes}"
    if args.factory:
        nlist, _ = ivf.parse_factory(args.factory)
        factory = args.factory
    rng = np.random.default_rng(1)
    span = world.side * 50.0
    box = (0.35 * span, 0.35 * span, 0.67 * span, 0.67 * span)  # about a tenth of the area
    q_all, _ = _queries(world, args.queries, rng)
    q_box, _ = _queries(world, args.queries // 2, rng, box)
    report: dict = {"n": args.n, "dim": args.dim, "factory": factory, "blocks": nblocks,
                    "threads": args.threads}  # fmt: skip
    print(json.dumps(report), flush=True)

    # 1. Blocks as the build writes them; the exact top-10 accumulated on the way.
    t0 = time.perf_counter()
    k = 10
    best = {name: (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1))
            for name, q in (("all", q_all), ("box", q_box))}  # fmt: skip
    sample, box_ids = [], []
    per_block_sample = max(1, int(40 * nlist * 1.2 / nblocks) + 1)
    for b in range(nblocks):
        ids, x = world.block(b)
        blocks.write_block(work, f"b{b:06d}", ids, x)
        xf = x.astype(np.float32)
        sample.append(xf[rng.choice(len(xf), min(len(xf), per_block_sample), replace=False)])
        _, cx, cy = chipid.centres(ids, SIZES, OVERLAP)
        inside = (cx >= box[0]) & (cx <= box[2]) & (cy >= box[1]) & (cy <= box[3])
        box_ids.append(ids[inside])
        for name, q, mask in (("all", q_all, None), ("box", q_box, inside)):
            s = q @ xf.T
            if mask is not None:
                s[:, ~mask] = -np.inf
            bs, bi = best[name]
            cs = np.concatenate([bs, s], 1)
            ci = np.concatenate([bi, np.broadcast_to(ids, s.shape)], 1)
            top = np.argpartition(-cs, k, axis=1)[:, :k]
            best[name] = (np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1))
    report["write_blocks_s"] = round(time.perf_counter() - t0, 1)
    report["parquet_gb"] = round(_size(work / blocks.EMBEDDINGS) / 1e9, 3)

    # 2. Train on a sample, fill per block, merge on disk.
    t0 = time.perf_counter()
    trained = ivf.train_ivf(np.concatenate(sample), factory, niter=10)
    faiss.write_index(trained, str(work / "trained.faiss"))
    report["train_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    parts = work / "ivf_blocks"
    parts.mkdir()
    files = []
    for p in sorted((work / blocks.EMBEDDINGS).glob("*.parquet")):
        ids, x = blocks.read_block(p, args.dim)
        files.append(parts / f"{p.stem}.faiss")
        ivf.fill_block(trained, ids, x.astype(np.float32), files[-1])
    report["fill_s"] = round(time.perf_counter() - t0, 1)
    folder = work / "index"
    folder.mkdir()
    report.update(_merge_child(work / "trained.faiss", files, folder))
    shutil.rmtree(parts)
    report["index_gb"] = round(_size(folder) / 1e9, 3)
    print(json.dumps(report), flush=True)

    # 3. Open memory-mapped; latency and recall.
    t0 = time.perf_counter()
    index = ivf.open_ondisk(folder)
    report["open_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    report["rss_after_open_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    truth = {name: best[name][1] for name in best}
    allowed = np.concatenate(box_ids)
    report["box_chips"] = len(allowed)
    # What VectorSearch scans by default: the nprobe saved in the index (train_ivf's choice).
    report["engine_nprobe"] = search.VectorSearch(index).nprobe
    report["load_avg_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    rows = []
    sweep = sorted({int(v) for v in args.nprobe.split(",")} | {report["engine_nprobe"]})
    for nprobe in sweep:
        if nprobe > nlist:
            continue
        vs = search.VectorSearch(index, nprobe=nprobe)
        lat, got = _timed(lambda q, vs=vs: vs.search(q, k), q_all)
        # The first filtered query makes the region's selector (kept for the next ones).
        t = time.perf_counter()
        vs.search(q_box[:1], k, allowed)
        first_box_ms = round((time.perf_counter() - t) * 1000, 1)
        lat_b, got_b = _timed(lambda q, vs=vs: vs.search(q, k, allowed), q_box)
        rows.append({
            "nprobe": nprobe, "box_plan": list(vs.plan(len(allowed), k, 1)),
            "box_first_query_ms": first_box_ms,
            "p50_ms": _ms(lat, 50), "p95_ms": _ms(lat, 95),
            "recall@10": _recall(got, truth["all"]),
            "box_p50_ms": _ms(lat_b, 50), "box_p95_ms": _ms(lat_b, 95),
            "box_recall@10": _recall(got_b, truth["box"]),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    report["search"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scale-{args.n}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    if not args.keep:
        shutil.rmtree(work)
    return 0


def _timed(fn, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Per-query seconds and top ids, one query vector at a time."""
    lat, got = [], []
    for q in queries:
        t = time.perf_counter()
        _, i = fn(q[None])
        lat.append(time.perf_counter() - t)
        got.append(i[0])
    return lat, got


def _ms(values: list[float], pct: int) -> float:
    return round(float(np.percentile(values, pct)) * 1000, 2)


def _recall(got: list[np.ndarray], truth: np.ndarray) -> float:
    pairs = zip(got, truth, strict=True)
    return round(float(np.mean([len(set(g) & set(t)) / len(t) for g, t in pairs])), 3)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.exit(main())
