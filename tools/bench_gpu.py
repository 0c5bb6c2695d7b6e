"""GPU benchmark (`make bench-gpu`): vit-l-14 in fp16 on CUDA and TensorRT, under 10 minutes.

On a machine with an NVIDIA GPU (nvidia-smi lists one):

1. installs the GPU build of onnxruntime (requirements-gpu.txt's pin, with NVIDIA's CUDA and
   cuDNN wheels, and TensorRT's libraries where pip has them) into out/bench/gpu/site, apart
   from the project's venv: onnxruntime and onnxruntime-gpu share one import name, and the
   CPU benchmarks must keep the CPU build;
2. makes a vit-l-14 bundle with random weights (`model_export init`, then `export --towers
   satellite --precision fp32,fp16`), or reuses one (--bundle, or the one a previous run left);
3. in a child process that imports the GPU build: chips per second of the fp16 satellite tower
   with the CUDA and the TensorRT execution providers (TensorRT's engine cache on disk under
   out/bench/gpu/trt-cache, so a second run skips the engine build) over batch sizes 8-128;
   the end-to-end index build rate over a synthetic GeoTIFF it writes (flip augmentation on and
   off, reading included); GPU memory from nvidia-smi, sampled while each part runs;
4. writes out/bench/gpu/result.json (tools/bench_engine.py and tools/render_benchmarks.py
   read it).

Without an NVIDIA GPU it prints "no NVIDIA GPU" and exits 0. `--cpu-dry-run` runs steps 2-4 on
the CPU with the tiny preset, for the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 540  # stop starting new measurements after this: the whole run stays under 10 min
BATCHES = (8, 16, 32, 64, 128)
TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def gpu_info() -> dict | None:
    """Name, driver and memory of the first NVIDIA GPU, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    q = "name,driver_version,memory.total,memory.used"
    try:
        out = subprocess.run([exe, f"--query-gpu={q}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, driver, total, used = (v.strip() for v in lines[0].split(","))
    return {"name": name, "driver": driver, "memory_total_mb": int(float(total)),
            "memory_used_mb": int(float(used)), "count": len(lines)}  # fmt: skip


class MemorySampler:
    """Peak GPU memory used (MB, nvidia-smi, every 0.2 s) while a block runs."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.peak = enabled and shutil.which("nvidia-smi") is not None, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            info = gpu_info()
            if info:
                self.peak = max(self.peak, info["memory_used_mb"])
            self._stop.wait(0.2)

    def __enter__(self) -> MemorySampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()


# ---------------------------------------------------------------- parent: install and bundle


def install(site: Path) -> dict:
    """onnxruntime-gpu (pinned) with CUDA/cuDNN wheels into `site`; TensorRT libs if pip has
    them. Returns what was installed, or why not."""
    pin = next(line.strip() for line in (ROOT / "requirements-gpu.txt").read_text().splitlines()
               if line.strip().startswith("onnxruntime-gpu"))  # fmt: skip
    name, version = pin.split("==")
    marker = site / f".installed-{version}"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(site, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--target", str(site), "-c", str(ROOT / "constraints.txt")]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([*pip, f"{name}[cuda,cudnn]=={version}"], check=True)
    done = {"onnxruntime_gpu": version, "install_s": 0.0, "tensorrt": None}
    # The TensorRT execution provider loads libnvinfer at run time; NVIDIA publishes it on PyPI
    # per CUDA major. Without it TensorRT is reported as unavailable, CUDA still runs.
    trt = subprocess.run([*pip, "--upgrade", "tensorrt-cu13-libs"], capture_output=True, text=True)
    done["tensorrt"] = "tensorrt-cu13-libs" if trt.returncode == 0 else trt.stderr.strip()[-300:]
    done["install_s"] = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps(done))
    return done


def library_path(site: Path) -> str:
    """The NVIDIA wheels' library folders, for the child's dynamic loader."""
    dirs = sorted(str(p) for p in site.glob("nvidia/*/lib")) + sorted(
        str(p) for p in site.glob("tensorrt_libs")
    )
    return ":".join(dirs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":")


def make_bundle(out: Path, preset: str, precisions: str) -> tuple[Path, float]:
    """A random-weight bundle of the satellite tower (reused when present)."""
    bundle = out / f"bundle-{preset}"
    if (bundle / "manifest.json").exists():
        return bundle, 0.0
    t0 = time.perf_counter()
    ckpt = out / f"random-{preset}.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not ckpt.exists():
        subprocess.run([sys.executable, "-m", "model_export", "init", "--preset", preset,
                        "--out", str(ckpt)], check=True, env=env)  # fmt: skip
    shutil.rmtree(bundle, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "model_export", "export", "--preset", preset,
                    "--checkpoint", str(ckpt), "--towers", "satellite", "--precision", precisions,
                    "--name", f"{preset} (random weights)", "--out", str(bundle)],
                   check=True, env=env)  # fmt: skip
    ckpt.unlink()
    return bundle, time.perf_counter() - t0


# ---------------------------------------------------------------- child: measure


def write_raster(path: Path, side_px: int) -> Path:
    """A textured RGB GeoTIFF, 0.5 m pixels, UTM 33N, tiled and compressed as real ones are."""
    import numpy as np
    from osgeo import gdal, osr
    from PIL import Image

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    low = rng.integers(0, 255, (side_px // 40 + 2, side_px // 40 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((side_px, side_px), Image.BICUBIC))
    tmp = path.with_suffix(".tmp.tif")
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp), side_px, side_px, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE"])  # fmt: skip
    ds.SetGeoTransform((500000, 0.5, 0, 5500000, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(img[..., b])
    ds = None
    tmp.replace(path)
    return path


def provider_options(provider: str, cache: Path, name: str, size: tuple, max_batch: int):
    if provider == TRT:
        h, w = size
        return (TRT, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                      "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                      "trt_timing_cache_path": str(cache),
                      "trt_profile_min_shapes": f"{name}:1x3x{h}x{w}",
                      "trt_profile_opt_shapes": f"{name}:32x3x{h}x{w}",
                      "trt_profile_max_shapes": f"{name}:{max_batch}x3x{h}x{w}"})  # fmt: skip
    return provider


def sweep(bundle_dir: Path, provider: str, precision: str, batches, cache: Path, deadline: float,
          gpu: bool) -> dict:  # fmt: skip
    """Chips per second of the satellite tower per batch size, one session."""
    import numpy as np
    import onnxruntime as ort

    from geobridge_qgis.core.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    tower = bundle.towers["satellite"]
    size = tuple(tower.input["size"])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    row: dict = {"precision": precision}
    with MemorySampler(gpu) as mem:
        t0 = time.perf_counter()
        session = ort.InferenceSession(
            str(tower.path_for(precision)),
            options,
            providers=[provider_options(provider, cache, "pixel_values", size, max(batches))]
            + ([CPU] if provider != CPU else []),
        )
        used = session.get_providers()[0]
        row["provider_used"] = used
        if used != provider:
            row["error"] = f"{provider} not used (onnxruntime fell back to {used})"
            return row
        x = np.random.default_rng(0).normal(size=(max(batches), 3, *size)).astype(np.float32)
        session.run(None, {"pixel_values": x[:1]})
        row["session_and_first_run_s"] = round(time.perf_counter() - t0, 1)
        rates = {}
        for b in batches:
            if time.perf_counter() > deadline:
                rates[str(b)] = "skipped (time budget)"
                continue
            xb = np.ascontiguousarray(x[:b])
            session.run(None, {"pixel_values": xb})  # warm-up: kernels, TensorRT profile
            n, t1 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t1 < 2.0:
                session.run(None, {"pixel_values": xb})
                n += 1
            rates[str(b)] = round(b * n / (time.perf_counter() - t1), 1)
        row["chips_per_s"] = rates
    row["gpu_memory_peak_mb"] = mem.peak or None
    numeric = [v for v in rates.values() if isinstance(v, float)]
    row["best_chips_per_s"] = max(numeric) if numeric else None
    return row


def index_rate(bundle_dir: Path, providers: list[str], precision: str, raster: Path, work: Path,
               batch: int, deadline: float, gpu: bool) -> dict:  # fmt: skip
    """End-to-end index builds over the raster: reading, encoding, saving, publishing."""
    from geobridge_qgis.core import tiling
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.index import build_index

    enc = Encoders(Bundle.load(bundle_dir), providers, batch_size=batch, precision=precision)
    out: dict = {"provider": None, "batch": batch}
    ds = tiling.open_raster(raster)
    grid = tiling.plan_grid(ds)
    reader = tiling.ChipReader(ds, grid.crs, (0, 0, 1e9, 1e9))
    px = enc.bundle.towers["satellite"].input["size"][0]
    t0, n = time.perf_counter(), min(len(grid), 2000)
    for i in range(n):
        reader.read(grid.cx[i], grid.cy[i], grid.sizes[i], px)
    out["read_only_chips_per_s"] = round(n / (time.perf_counter() - t0), 1)
    for flip in (True, False):
        if time.perf_counter() > deadline:
            out[f"flip_{'on' if flip else 'off'}"] = "skipped (time budget)"
            continue
        idx = work / f"index-flip{int(flip)}"
        shutil.rmtree(idx, ignore_errors=True)
        shutil.rmtree(idx.with_name(idx.name + ".partial"), ignore_errors=True)
        with MemorySampler(gpu) as mem:
            t1 = time.perf_counter()
            build_index(enc, raster, idx, flip=flip)
            seconds = time.perf_counter() - t1
        count = json.loads((idx / "index.json").read_text())["count"]
        out[f"flip_{'on' if flip else 'off'}"] = {
            "chips": len(grid), "indexed": count, "seconds": round(seconds, 1),
            "chips_per_s": round(len(grid) / seconds, 1), "gpu_memory_peak_mb": mem.peak or None,
        }  # fmt: skip
        shutil.rmtree(idx, ignore_errors=True)
    out["provider"] = enc.active_provider
    return out


def child(args) -> int:
    """Runs under the GPU build of onnxruntime; prints one JSON object."""
    import onnxruntime as ort

    deadline = time.perf_counter() + (args.deadline - time.time())  # on perf_counter's clock
    gpu = not args.cpu_dry_run
    if gpu and hasattr(ort, "preload_dlls"):
        try:  # CUDA/cuDNN from the NVIDIA wheels beside it, whatever the loader path says
            ort.preload_dlls()
        except Exception as e:  # one part failing must not lose the others
            print(f"preload_dlls: {e}", file=sys.stderr)
    res: dict = {"onnxruntime": ort.__version__, "available": ort.get_available_providers()}
    providers = [CPU] if not gpu else [CUDA, TRT]
    precision = "fp32" if args.cpu_dry_run else "fp16"
    batches = tuple(int(b) for b in args.batches.split(","))
    res["encoder"] = {}
    for p in providers:
        if p not in res["available"]:
            res["encoder"][p] = {"error": "not in this onnxruntime build"}
            continue
        try:
            res["encoder"][p] = sweep(args.bundle, p, precision, batches, args.out / "trt-cache",
                                      deadline, gpu)  # fmt: skip
        except Exception as e:  # one part failing must not lose the others
            res["encoder"][p] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        print(json.dumps({p: res["encoder"][p]}), file=sys.stderr, flush=True)
    raster = write_raster(args.out / "raster.tif", args.raster_px)
    best = [p for p in (TRT, CUDA, CPU) if isinstance(res["encoder"].get(p), dict)
            and res["encoder"][p].get("best_chips_per_s")]  # fmt: skip
    if best:
        batch = 64 if gpu else 8
        try:
            res["index_build"] = index_rate(args.bundle, list(dict.fromkeys([best[0], CPU])),
                                            precision, raster,
                                            args.out, batch, deadline, gpu)  # fmt: skip
        except Exception as e:  # one part failing must not lose the others
            res["index_build"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    print(json.dumps(res))
    return 0


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench/gpu")
    ap.add_argument("--bundle", type=Path, help="a bundle with fp16 satellite tower to reuse")
    ap.add_argument("--preset", default="vit-l-14")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--raster-px", type=int, default=6000, help="side of the synthetic raster")
    ap.add_argument("--cpu-dry-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        return child(args)
    t0 = time.time()
    gpu = gpu_info()
    if gpu is None and not args.cpu_dry_run:
        print("no NVIDIA GPU")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"gpu": gpu["name"] if gpu else "none (CPU dry run)", "gpu_info": gpu,
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                 "preset": args.preset}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(args.out / "cache")}
    if gpu:
        site = args.out / "site"
        res["install"] = install(site)
        env["PYTHONPATH"] = f"{site}:{ROOT}"
        env["LD_LIBRARY_PATH"] = library_path(site)
    precisions = "fp32" if args.cpu_dry_run else "fp32,fp16"
    bundle, export_s = (args.bundle, 0.0) if args.bundle else make_bundle(args.out, args.preset,
                                                                         precisions)  # fmt: skip
    res["bundle"], res["export_s"] = str(bundle), round(export_s, 1)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--out", str(args.out),
               "--bundle", str(bundle), "--batches", args.batches, "--raster-px",
               str(args.raster_px), "--deadline", str(t0 + BUDGET_S)]  # fmt: skip
        if args.cpu_dry_run:
            cmd.append("--cpu-dry-run")
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=tmp)
    if done.returncode != 0:
        res["error"] = f"measuring child exited with {done.returncode}"
    else:
        res.update(json.loads(done.stdout.strip().splitlines()[-1]))
    rates = [r.get("best_chips_per_s") for r in res.get("encoder", {}).values()
             if isinstance(r, dict) and r.get("best_chips_per_s")]  # fmt: skip
    if rates and gpu and args.preset == "vit-l-14":
        res["vitl14_fp16_chips_per_s_gpu"] = max(rates)
    res["total_s"] = round(time.time() - t0, 1)
    (args.out / "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
