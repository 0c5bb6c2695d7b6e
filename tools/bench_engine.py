"""Engine benchmarks (`make bench`): one run, one JSON of figures and ratios, never asserted.

Writes out/bench/engine/result.json; `tools/render_benchmarks.py` turns it into the table in
docs/BENCHMARKS.md. Steps (`--only` / `--skip` pick some; a later run of some steps keeps the
other steps' figures, and `modes` says which run, quick or full, each figure came from):

- cpu: the CPU's model and the flags that decide int8 and fp16 speed (avx512_vnni, amx, ...);
- vitl14: a `vit-l-14` satellite tower with random weights (`model_export init` + `export
  --towers satellite --precision fp32,int8`, made once under out/bench/vitl14): ms per image
  in fp32 and int8 through the engine's own sessions, the speedup, the minimum cosine between
  them on real chips, the precision `auto` chooses here, and the session options measured
  (intra-op threads, graph optimisation);
- build: the end-to-end index build rate over a synthetic raster with vit-l-14 in the chosen
  precision, flip augmentation on and off; and, with the demo bundle, how much the read-ahead
  overlaps reading with encoding (read alone, encode alone, the build);
- search: exact search over 1e6 x 768 (numpy, faiss at 1 and 2 threads) and the approximate
  index that meets 10 ms at recall@10 >= 0.95 (tools/bench_search.py has the sweep and the way
  the realistic embeddings are made), without and with a region filter;
- memory: peak resident memory of index builds over two region sizes (demo bundle);
- flip: R@1, R@5 and top-1 within 50 m on the demo evaluation world with and without flip
  augmentation (tools/eval_flip.py);
- gpu: copied from out/bench/gpu/result.json when `make bench-gpu` ran on a GPU.

`--quick` uses fewer images, chips, queries and vectors (the vit-l-14 bundle is the same): a
few minutes on 2 cores once the bundle exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
         "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip
UTM_ORIGIN = (500000.0, 5504000.0)  # the synthetic raster's upper-left corner, UTM 33N
RASTER_M = 4000


def cores() -> int:
    return len(os.sched_getaffinity(0))


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ---------------------------------------------------------------- cpu


def bench_cpu(res: dict, quick: bool, work: Path) -> None:
    from geobridge_qgis.core.precision import cpu_model

    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(
            next(x for x in text.splitlines() if x.startswith("flags")).split(":")[1].split()
        )
    except (OSError, StopIteration):
        flags = set()
    res["cpu_model"] = cpu_model()
    res["cpu_flags"] = {f: f in flags for f in FLAGS}
    res["machine"] = f"{platform.machine()}, {cores()} cores, {os.cpu_count()} CPUs"
    res["load_average_at_start"] = round(os.getloadavg()[0], 1)


# ---------------------------------------------------------------- vit-l-14


def vitl14_bundle(work: Path) -> Path:
    """A vit-l-14 satellite tower with random weights in fp32 and int8 (made once)."""
    from model_export.bench_export import measure_child

    root = work.parent / "vitl14"
    bundle = root / "bundle"
    if (bundle / "manifest.json").exists():
        return bundle
    root.mkdir(parents=True, exist_ok=True)
    ckpt = root / "random.safetensors"
    m = [sys.executable, "-m", "model_export"]
    if not ckpt.exists():
        measure_child([*m, "init", "--preset", "vit-l-14", "--out", str(ckpt)])
    shutil.rmtree(bundle, ignore_errors=True)
    seconds, peak_gb = measure_child([*m, "export", "--preset", "vit-l-14", "--checkpoint",
                                      str(ckpt), "--towers", "satellite", "--precision",
                                      "fp32,int8", "--name", "vit-l-14 (random weights)",
                                      "--out", str(bundle)])  # fmt: skip
    ckpt.unlink()  # 4 GB; the bundle is what the benchmarks use
    (root / "export.json").write_text(json.dumps({"export_s": round(seconds, 1),
                                                  "peak_rss_gb": round(peak_gb, 2)}))  # fmt: skip
    return bundle


def synthetic_raster(work: Path) -> Path:
    """4 km x 4 km at 1 m/px, UTM 33N: smooth random colour fields, tiled and compressed."""
    from osgeo import gdal, osr
    from PIL import Image

    raster = work / "big.tif"
    if raster.exists():
        return raster
    n = RASTER_M
    rng = np.random.default_rng(0)
    low = rng.integers(0, 255, (n // 25, n // 25, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((n, n), Image.BICUBIC))
    tmp = work / "big.tmp.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp), n, n, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE"])  # fmt: skip
    ds.SetGeoTransform((UTM_ORIGIN[0], 1, 0, UTM_ORIGIN[1], 0, -1))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(img[..., b])
    ds = None
    tmp.replace(raster)
    return raster


def bbox(side_m: float, x_off: float = 0.0) -> str:
    x0, y1 = UTM_ORIGIN[0] + x_off, UTM_ORIGIN[1]
    return f"{x0},{y1 - side_m},{x0 + side_m},{y1}"


def real_chips(raster: Path, n: int, px: int) -> list[np.ndarray]:
    from geobridge_qgis.core import tiling

    ds = tiling.open_raster(raster)
    grid = tiling.plan_grid(ds)
    reader = tiling.ChipReader(ds, grid.crs, (0, 0, 1e9, 1e9))
    rows = np.random.default_rng(0).choice(len(grid), 4 * n, replace=False)
    chips = [reader.read(grid.cx[i], grid.cy[i], grid.sizes[i], px) for i in rows]
    return [c for c in chips if c is not None][:n]


def bench_vitl14(res: dict, quick: bool, work: Path) -> None:
    import onnxruntime as ort

    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders, physical_cores
    from geobridge_qgis.core.transform import to_pixel_values

    bundle = Bundle.load(vitl14_bundle(work))
    export = json.loads((work.parent / "vitl14" / "export.json").read_text())
    spec = bundle.towers["satellite"].input
    batch, repeat = (4, 2) if quick else (8, 3)
    x = to_pixel_values(real_chips(synthetic_raster(work), batch, spec["size"][0]), spec)
    ms, emb = {}, {}
    for p in ("fp32", "int8"):
        enc = Encoders(bundle, ["CPUExecutionProvider"], batch_size=batch, precision=p)
        emb[p] = enc.encode_pixels("satellite", x, flip=False)  # warm-up and the embeddings
        ms[p] = 1000 * _best(lambda e=enc: e.encode_pixels("satellite", x, flip=False), repeat)
        ms[p] /= len(x)
    cos = np.sum(emb["fp32"] * emb["int8"], axis=1)
    res["vitl14_fp32_ms_per_image"] = round(ms["fp32"], 1)
    res["vitl14_int8_ms_per_image"] = round(ms["int8"], 1)
    res["vitl14_int8_speedup"] = round(ms["fp32"] / ms["int8"], 2)
    res["vitl14_int8_min_cos"] = round(float(cos.min()), 5)
    res["vitl14_int8_min_cos_exporter"] = bundle.variant_agreement("int8")
    res["vitl14_detail"] = {
        "model": "vit-l-14 satellite tower, random weights, 224 px",
        "images": len(x), "batch": batch, "flip_tta": False,
        "fp32_mb": round(bundle.towers["satellite"].path_for("fp32").stat().st_size / 1e6),
        "int8_mb": round(bundle.towers["satellite"].path_for("int8").stat().st_size / 1e6),
        "export_s": export["export_s"], "export_peak_rss_gb": export["peak_rss_gb"],
    }  # fmt: skip
    # What `auto` picks here, measured afresh (a private cache: not the user's verdict).
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    shutil.rmtree(work / "cache", ignore_errors=True)
    res["vitl14_precision_chosen"] = Encoders(bundle, ["CPUExecutionProvider"]).precision
    # The session options the engine sets, against the alternatives, on the int8 tower.
    path = str(bundle.towers["satellite"].path_for("int8"))
    rows = {}
    for label, threads, level in (
        (f"threads {physical_cores()} (physical cores), ORT_ENABLE_ALL", physical_cores(),
         ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        ("threads 1, ORT_ENABLE_ALL", 1, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        (f"threads {physical_cores()}, ORT_ENABLE_BASIC", physical_cores(),
         ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    ):  # fmt: skip
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.graph_optimization_level = threads, level
        o.log_severity_level = 3
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        s.run(None, {"pixel_values": x})
        rows[label] = round(
            1000 * _best(lambda s=s: s.run(None, {"pixel_values": x}), 2) / len(x), 1
        )
    res["vitl14_int8_session_options_ms_per_image"] = rows


# ---------------------------------------------------------------- build rate and overlap


def _build(encoders, raster: Path, out: Path, box: str, flip: bool) -> dict:
    from pyproj import CRS

    from geobridge_qgis.core import tiling
    from geobridge_qgis.core.index import build_index

    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    rates: list[float] = []
    region = tiling.Region.from_bbox(box, CRS.from_epsg(32633))
    t0, c0 = time.perf_counter(), os.times()
    build_index(encoders, raster, out, region=region, flip=flip,
                progress=lambda done, total, rate: rates.append(rate))  # fmt: skip
    seconds = time.perf_counter() - t0
    c1 = os.times()
    # CPU seconds of every thread of this process per wall second: 2.0 = both cores busy.
    busy = (c1.user - c0.user + c1.system - c0.system) / max(seconds, 1e-9)
    chips = json.loads((out / "index.json").read_text())
    shutil.rmtree(out)
    n = chips["count"] + chips["skipped"]
    # The progress rate covers reading, encoding and saving shards: the part that grows with
    # the region (the seconds also hold the plan's timing run and the publish).
    return {"chips": n, "seconds": round(seconds, 1), "chips_per_s": round(rates[-1], 2),
            "cores_busy": round(busy, 2)}  # fmt: skip


def bench_build(res: dict, quick: bool, work: Path) -> None:
    from pyproj import CRS

    from geobridge_qgis.core import tiling
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders

    raster = synthetic_raster(work)
    bundle = Bundle.load(vitl14_bundle(work))
    enc = Encoders(bundle, ["CPUExecutionProvider"], batch_size=8)  # auto precision
    side = 150 if quick else 300  # 150 m: 5 chips of 100 m and 150 m, 300 m: 20 (at 50 % overlap)
    rows = {"precision": enc.precision, "model": "vit-l-14 (random weights)"}
    for flip in (True, False):
        rows[f"flip_{'on' if flip else 'off'}"] = _build(
            enc, raster, work / "vitl", bbox(side), flip
        )
    res["index_build_chips_per_s_cpu"] = {
        "flip_on": rows["flip_on"]["chips_per_s"],
        "flip_off": rows["flip_off"]["chips_per_s"],
        "precision": rows["precision"],
    }
    res["index_build_detail_vitl14"] = rows

    # Overlap, with the demo bundle (fast enough for a region of thousands of chips): reading
    # alone, encoding alone (the same chips, already in memory) and the build.
    demo = Encoders(Bundle.load(ROOT / "resources/demo/bundle"), ["CPUExecutionProvider"])
    side = 600 if quick else 1000
    region = tiling.Region.from_bbox(bbox(side, 1000), CRS.from_epsg(32633))
    ds = tiling.open_raster(raster)
    grid = tiling.plan_grid(ds, region)
    reader = tiling.ChipReader(ds, grid.crs, (0, 0, 1e9, 1e9))
    px = demo.bundle.towers["satellite"].input["size"][0]
    t0 = time.perf_counter()
    chips = [reader.read(grid.cx[i], grid.cy[i], grid.sizes[i], px) for i in range(len(grid))]
    read_s = time.perf_counter() - t0
    chips = [c for c in chips if c is not None]
    demo.encode_images("satellite", chips[:8])
    t0 = time.perf_counter()
    for s in range(0, len(chips), 256):
        demo.encode_images("satellite", chips[s : s + 256])
    encode_s = time.perf_counter() - t0
    built = _build(demo, raster, work / "demo", bbox(side, 1000), True)
    serial = len(grid) / (read_s + encode_s)
    res["index_build_overlap_demo"] = {
        "chips": len(grid),
        "read_only_chips_per_s": round(len(grid) / read_s, 1),
        "encode_only_chips_per_s": round(len(grid) / encode_s, 1),
        "read_then_encode_chips_per_s": round(serial, 1),
        "build_chips_per_s": built["chips_per_s"],
        "build_vs_read_then_encode": round(built["chips_per_s"] / serial, 2),
        "build_cores_busy": built["cores_busy"],
        "cores": cores(),
    }


# ---------------------------------------------------------------- search


def bench_search_step(res: dict, quick: bool, work: Path) -> None:
    import faiss

    from tools import bench_search as bs

    real = bs.real_embeddings(work.parent / "search", quick)
    synth = bs.Synthetic(real)
    n = 1_000_000
    res["search_exact_1e6_ms_per_query"] = _exact(synth, n, synth.queries[: 10 if quick else 30])

    # The approximate index chosen by tools/bench_search.py's sweep (see docs/BENCHMARKS.md).
    factory, nprobe = ANN
    index, train_s, add_s = bs.build(synth, n, factory, bs.CANDIDATES[factory][1])
    queries = synth.queries
    truth = bs.exact_topk(synth, n, queries)
    row = bs.sweep(index, queries, truth, (nprobe,), threads=(2,))[0]
    res["search_ann_index"] = f"{factory}, nprobe={nprobe}"
    res["search_ann_1e6_ms_per_query"] = row["ms_threads2"]
    res["search_ann_1e6_recall_at_10"] = row["recall_at_10"]
    regions = {}
    for share in (0.1, 0.01):
        ids = synth.region(n, share)
        bitmap = np.zeros((n + 7) // 8, np.uint8)
        np.bitwise_or.at(bitmap, ids >> 3, (1 << (ids & 7)).astype(np.uint8))
        sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        r = bs.sweep(index, queries, bs.exact_topk(synth, n, queries, ids), (nprobe,), sel, (2,))
        regions[f"{share:.0%} of the chips ({len(ids):,})"] = {
            "ms_per_query": r[0]["ms_threads2"], "recall_at_10": r[0]["recall_at_10"]}  # fmt: skip
    res["search_ann_1e6_region_filter"] = regions
    res["search_ann_detail"] = {
        "train_s": round(train_s, 1),
        "add_s": round(add_s, 1),
        "threads": 2,
        "queries": len(queries),
        "embeddings": "tools/bench_search.py (from the demo model's embeddings)",
    }


def _exact(synth, n: int, q: np.ndarray) -> dict:
    """ms for one query over n x 768 fp32: numpy's matrix product, faiss Flat at 1 and 2
    threads (one fp32 copy at a time)."""
    import faiss

    from tools import bench_search as bs

    xb = synth.all(n)
    out = {"numpy": round(bs.per_query_ms(lambda x: bs.numpy_topk(xb, x), q), 1)}
    flat = faiss.IndexFlatIP(bs.D)
    flat.add(xb)
    xb = None
    for t in (1, 2):
        faiss.omp_set_num_threads(t)
        out[f"faiss_threads{t}"] = round(bs.per_query_ms(lambda x: flat.search(x, bs.K), q), 1)
    faiss.omp_set_num_threads(cores())
    return out


ANN = ("IVF4096,Flat", 32)  # set from tools/bench_search.py's sweep (docs/BENCHMARKS.md)


# ---------------------------------------------------------------- memory


def bench_memory(res: dict, quick: bool, work: Path) -> None:
    """Index builds over two region sizes, each in a child process; peak RSS of each."""
    from model_export.bench_export import measure_child

    raster = synthetic_raster(work)
    rows = {}
    for label, side in ((("0.25 km2", 500), ("2.5 km2", 1581)) if quick else
                        (("1 km2", 1000), ("10 km2", 3162))):  # fmt: skip
        idx = work / f"index-{side}"
        shutil.rmtree(idx, ignore_errors=True)
        shutil.rmtree(idx.with_name(idx.name + ".partial"), ignore_errors=True)
        cmd = [sys.executable, "-m", "geobridge_qgis", "index", "--bundle",
               str(ROOT / "resources/demo/bundle"), "--raster", str(raster), "--bbox", bbox(side),
               "--out", str(idx)]  # fmt: skip
        seconds, peak_gb = measure_child(cmd)
        chips = json.loads((idx / "index.json").read_text())["count"]
        shutil.rmtree(idx)
        rows[label] = {"chips": chips, "seconds": round(seconds, 1),
                       "peak_rss_mb": round(peak_gb * 1000)}  # fmt: skip
    res["index_build_peak_rss_mb"] = {k: v["peak_rss_mb"] for k, v in rows.items()}
    res["index_build_memory_detail"] = {"bundle": "demo", **rows}


# ---------------------------------------------------------------- gpu


def bench_gpu_copy(res: dict, quick: bool, work: Path) -> None:
    path = work.parent / "gpu" / "result.json"
    if not path.exists():
        res["gpu"] = None
        return
    gpu = json.loads(path.read_text())
    if gpu.get("vitl14_fp16_chips_per_s_gpu"):
        res["gpu"] = gpu["gpu"]
        res["vitl14_fp16_chips_per_s_gpu"] = gpu["vitl14_fp16_chips_per_s_gpu"]


def bench_flip(res: dict, quick: bool, work: Path) -> None:
    """Flip augmentation's effect on accuracy (tools/eval_flip.py, the demo evaluation)."""
    from tools.eval_flip import evaluate

    res["flip_eval_demo"] = evaluate(work.parent / "flip")


STEPS = {"cpu": bench_cpu, "vitl14": bench_vitl14, "build": bench_build,
         "search": bench_search_step, "memory": bench_memory, "flip": bench_flip,
         "gpu": bench_gpu_copy}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench/engine")
    ap.add_argument("--quick", action="store_true", help="fewer images, chips and queries")
    ap.add_argument("--only", default="", help=f"comma list of {','.join(STEPS)}")
    ap.add_argument("--skip", default="", help="comma list of steps to leave out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "result.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    modes = res.setdefault("modes", {})
    only = [s for s in args.only.split(",") if s] or list(STEPS)
    skip = set(args.skip.split(","))
    mode = "quick" if args.quick else "full"
    for name in only:
        if name in skip:
            continue
        t0 = time.perf_counter()
        print(f"{name} ({mode})", flush=True)
        STEPS[name](res, args.quick, args.out)
        modes[name] = {"mode": mode, "seconds": round(time.perf_counter() - t0, 1),
                       "load_average": round(os.getloadavg()[0], 1),
                       "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
        path.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
