"""Which of a bundle's precisions runs on this device.

On a GPU (TensorRT or CUDA first among the providers) fp16: tensor cores double the
throughput and the exporter verified it against PyTorch. On a CPU int8 when it is measurably
faster here: dynamic int8 quantisation pays on CPUs with VNNI/AMX (about 3.6x on this
project's 2-core machine) and can be slower on CPUs without them. The measurement runs once
per machine, CPU, onnxruntime and model, and is kept in the user's cache folder. Otherwise the
bundle's reference precision. An explicit choice always wins.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)

AUTO = "auto"
CHOICES = (AUTO, "fp32", "fp16", "int8")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
MIN_COS = 0.99  # a variant whose recorded agreement with PyTorch is lower is never auto-chosen
INT8_GAIN = 0.9  # int8 must take under 90 % of fp32's time to be worth its small error
CACHE_FILE = "cpu_precision.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose(
    bundle: Any, providers: list[str], requested: str = AUTO, threads: int | None = None
) -> str:
    """The precision to run `bundle` with, given the providers in preference order."""
    have = bundle.precisions
    if requested and requested != AUTO:
        if requested not in have:
            raise UserError(
                f"{bundle.root}: no {requested} encoders in this bundle (it has {', '.join(have)})"
            )
        return requested
    usable = [p for p in have if (bundle.variant_agreement(p) or 0.0) >= MIN_COS]
    if providers and providers[0] in GPU_PROVIDERS:
        return "fp16" if "fp16" in usable else bundle.precision
    if "int8" in usable and bundle.precision != "int8":
        timing = cpu_timing(bundle, threads)
        if timing["int8_ms"] < INT8_GAIN * timing["ref_ms"]:
            return "int8"
    return bundle.precision


def _cache_path() -> Path:
    from .bundle import _cache_dir

    return _cache_dir() / CACHE_FILE


def cpu_timing(bundle: Any, threads: int | None = None) -> dict[str, float]:
    """ms per image of the reference and the int8 image tower on this CPU (cached)."""
    import onnxruntime as ort

    key = f"{cpu_model()}|onnxruntime {ort.__version__}|{bundle.model_id}"
    path = _cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), dict) and {"int8_ms", "ref_ms"} <= set(cache[key]):
        return cache[key]
    timing = measure(bundle, threads)
    cache[key] = timing
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1))
    except OSError as e:  # a read-only home still works, it only measures again next time
        log.warning("cannot keep the precision measurement in %s: %s", path, e)
    return timing


def measure(bundle: Any, threads: int | None = None, batch: int = 4, runs: int = 3) -> dict:
    """Time the reference and int8 files of one image tower on the CPU (best of `runs`)."""
    import onnxruntime as ort

    tower = next(t for t in bundle.towers.values() if t.kind == "image")
    h, w = tower.input["size"]
    x = np.random.default_rng(0).normal(size=(batch, 3, h, w)).astype(np.float32)
    out = {}
    for label, precision in (("ref_ms", bundle.precision), ("int8_ms", "int8")):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(tower.path_for(precision)), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        session.run(None, {name: x})  # warm-up: allocations and kernel choice
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            session.run(None, {name: x})
            best = min(best, time.perf_counter() - t0)
        out[label] = 1000.0 * best / batch
    log.info("CPU precision timing for %s: %s", bundle.model_id, out)
    return out
