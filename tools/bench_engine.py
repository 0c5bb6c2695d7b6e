"""Engine benchmarks (`make bench-engine`): figures for the README, never asserted in tests.

1. Chips per second through the satellite encoder on this machine's CPU (flip TTA on, as an
   index build runs it): the demo bundle, and vit-l-14 with random weights when `make
   bench-export` has made that bundle.
2. onnxruntime against PyTorch eager for the same tower and batch, in the same run.
3. FAISS against numpy brute force at 1e5 and 1e6 vectors of 768 dims: time per query batch,
   the ratio, and recall@10 against the exact answer.
4. Peak resident memory of an index build over a region ten times larger than another (the
   build streams chips, so it must stay flat).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_encoders(out: dict) -> None:
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders

    for label, path, batch in (
        ("demo", ROOT / "resources/demo/bundle", 32),
        ("vit-l-14 (random weights)", ROOT / "out/bench/export/bundle", 8),
    ):
        if not (path / "manifest.json").exists():
            out[f"encode {label}"] = "skipped (run make bench-export first)"
            continue
        enc = Encoders(Bundle.load(path), providers=["CPUExecutionProvider"], batch_size=batch)
        size = enc.bundle.towers["satellite"].input["size"]
        x = np.random.default_rng(0).normal(size=(batch, 3, *size)).astype(np.float32)
        enc.encode_pixels("satellite", x[:2])
        s = _best(lambda enc=enc, x=x: enc.encode_pixels("satellite", x), 2)
        out[f"encode {label}"] = {
            "chips_per_s_with_flip_tta": round(batch / s, 1),
            "batch": batch,
            "input_px": size[0],
        }


def bench_onnx_vs_torch(out: dict) -> None:
    import onnxruntime as ort
    import torch

    from model_export import model as M
    from model_export.export import export_tower

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    torch.manual_seed(0)
    model = M.GeoBridge(M.preset_config("demo"), ("satellite",)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "satellite.onnx"
        export_tower(model, "satellite", path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(32, 3, 128, 128)
        with torch.no_grad():
            model.satellite_encoder(x)
            t_torch = _best(lambda: model.satellite_encoder(x))
        session.run(None, {"pixel_values": x.numpy()})
        t_ort = _best(lambda: session.run(None, {"pixel_values": x.numpy()}))
    out["onnxruntime vs pytorch (demo satellite tower, batch 32)"] = {
        "pytorch_ms": round(t_torch * 1000, 1),
        "onnxruntime_ms": round(t_ort * 1000, 1),
        "speedup": round(t_torch / t_ort, 2),
    }


def bench_faiss(out: dict) -> None:
    import faiss

    rng = np.random.default_rng(0)
    d, nq, k = 768, 100, 10
    for n in (100_000, 1_000_000):
        xb = rng.standard_normal((n, d), dtype=np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        # Queries near a stored vector (noise of half its norm), as real queries are.
        noise = rng.standard_normal((nq, d), dtype=np.float32) * (0.5 / np.sqrt(d))
        xq = xb[rng.choice(n, nq, replace=False)] + noise
        xq /= np.linalg.norm(xq, axis=1, keepdims=True)

        def brute(xb=xb, xq=xq):
            s = xq @ xb.T
            top = np.argpartition(-s, k, axis=1)[:, :k]
            return np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1), 1)

        t_np = _best(brute, 2)
        truth = brute()
        row = {"numpy_ms": round(t_np * 1000, 1)}
        factories = ["Flat"] + (["HNSW32"] if n <= 100_000 else [])
        for factory in factories:
            index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
            t0 = time.perf_counter()
            index.add(xb)
            build = time.perf_counter() - t0
            t = _best(lambda index=index, xq=xq: index.search(xq, k), 2)
            _, ids = index.search(xq, k)
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, truth, strict=True)])
            row[factory] = {
                "ms": round(t * 1000, 1),
                "speedup_vs_numpy": round(t_np / t, 1),
                "recall@10": round(float(recall), 3),
                "build_s": round(build, 1),
            }
        out[f"faiss {n:,} x {d} ({nq} queries, top {k})"] = row
        del xb


def bench_build_memory(out: dict, work: Path) -> None:
    """Index builds over 1 km2 and 10 km2 of one raster, each in a child process."""
    from osgeo import gdal, osr
    from PIL import Image

    from model_export.bench_export import measure_child

    raster = work / "big.tif"
    if not raster.exists():
        n = 4000  # 4 km at 1 m/px
        rng = np.random.default_rng(0)
        low = rng.integers(0, 255, (n // 25, n // 25, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((n, n), Image.BICUBIC))
        ds = gdal.GetDriverByName("GTiff").Create(str(raster), n, n, 3, gdal.GDT_Byte,
                                                  ["TILED=YES", "COMPRESS=DEFLATE"])  # fmt: skip
        ds.SetGeoTransform((500000, 1, 0, 5504000, 0, -1))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32633)
        ds.SetProjection(srs.ExportToWkt())
        for b in range(3):
            ds.GetRasterBand(b + 1).WriteArray(img[..., b])
        ds = None
    rows = {}
    for label, side in (("1 km2", 1000), ("10 km2", 3162)):
        idx = work / f"index-{side}"
        bbox = f"500000,{5504000 - side},{500000 + side},5504000"
        cmd = [sys.executable, "-m", "geobridge_qgis", "index", "--bundle",
               str(ROOT / "resources/demo/bundle"), "--raster", str(raster), "--bbox", bbox,
               "--out", str(idx)]  # fmt: skip
        seconds, peak_gb = measure_child(cmd)
        chips = json.loads((idx / "index.json").read_text())["count"]
        rows[label] = {"chips": chips, "seconds": round(seconds, 1),
                       "peak_rss_mb": round(peak_gb * 1000)}  # fmt: skip
    out["index build peak memory (demo bundle)"] = rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench/engine")
    ap.add_argument("--skip", default="", help="comma list: encoders,onnx,faiss,memory")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    res: dict = {
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, CPU"
    }
    steps = [("encoders", bench_encoders), ("onnx", bench_onnx_vs_torch), ("faiss", bench_faiss),
             ("memory", lambda r: bench_build_memory(r, args.out))]  # fmt: skip
    for name, fn in steps:
        if name not in skip:
            fn(res)
            print(json.dumps(res, indent=1), flush=True)
    (args.out / "result.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
