"""Full-size export benchmark: a random-weight `vit-l-14` GeoBridge -> fp32 bundle.

Runs each step as a child process and reports its wall time and peak resident memory
(getrusage of the children), plus the size of each tower. `make bench-export` runs it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def measure_child(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of a child process, its RSS sampled every 0.05 s."""
    import psutil

    t0 = time.perf_counter()
    child = psutil.Popen(cmd, stderr=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed with exit code {child.returncode}")
    return time.perf_counter() - t0, peak / 1e9


def _run(args: list[str]) -> tuple[float, float]:
    return measure_child([sys.executable, "-m", "model_export", *args])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("out/bench/export"))
    ap.add_argument("--preset", default="vit-l-14")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    ckpt, bundle = args.out / "random.safetensors", args.out / "bundle"
    init_s, _ = _run(["init", "--preset", args.preset, "--out", str(ckpt)])
    export_s, export_gb = _run(
        ["export", "--preset", args.preset, "--checkpoint", str(ckpt), "--out", str(bundle)]
    )
    sizes = {p.stem: round(p.stat().st_size / 1e6, 1) for p in sorted(bundle.glob("*.onnx"))}
    result = {
        "preset": args.preset,
        "machine": f"{platform.processor() or platform.machine()}, {_cores()} cores",
        "checkpoint_gb": round(ckpt.stat().st_size / 1e9, 2),
        "init_s": round(init_s, 1),
        "export_s": round(export_s, 1),
        "export_peak_rss_gb": round(export_gb, 2),
        "tower_mb": sizes,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
