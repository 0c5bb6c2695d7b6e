"""The benchmark tools' contracts (their figures are never asserted: speed is not a test).

`make bench-gpu` on a machine without an NVIDIA GPU says so in one line and succeeds; the
benchmark document's tables come from the JSON and say plainly when the GPU run has not
happened; the realistic-embedding generator is deterministic and keeps its promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import ROOT


def test_bench_gpu_without_a_gpu_says_so(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no nvidia-smi anywhere on it
    r = subprocess.run([sys.executable, str(ROOT / "tools/bench_gpu.py"), "--out",
                        str(tmp_path / "gpu")], env=env, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "no NVIDIA GPU\n"
    assert not (tmp_path / "gpu").exists()  # nothing installed, nothing written


def test_rendered_tables_come_from_the_json(tmp_path):
    bench = tmp_path / "bench"
    (bench / "engine").mkdir(parents=True)
    result = {
        "modes": {"cpu": {"mode": "quick", "load_average": 3.0},
                  "search": {"mode": "full", "load_average": 1.5}},
        "cpu_model": "Test CPU", "machine": "x86_64, 2 cores",
        "cpu_flags": {"avx2": True, "avx512_vnni": True, "amx_int8": False},
        "search_exact_1e6_ms_per_query": {"numpy": 88.4, "faiss_threads1": 140.2,
                                          "faiss_threads2": 139.9},
        "search_ann_index": "IVF4096,Flat, nprobe=32", "search_ann_1e6_ms_per_query": 4.25,
        "search_ann_1e6_recall_at_10": 0.961,
    }  # fmt: skip
    (bench / "engine" / "result.json").write_text(json.dumps(result))
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# B\n\nprose kept\n\n<!-- tables:start -->\nold\n<!-- tables:end -->\nend\n")
    r = subprocess.run([sys.executable, str(ROOT / "tools/render_benchmarks.py"), "--doc",
                        str(doc), "--bench", str(bench)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert text.startswith("# B\n\nprose kept\n") and text.endswith("<!-- tables:end -->\nend\n")
    assert "old" not in text
    assert "| CPU flags | avx2, avx512_vnni | quick (load 3) |" in text
    assert "88.4 / 140.2 / 139.9 | full (load 1.5) |" in text
    assert "`IVF4096,Flat, nprobe=32` (ms, recall@10) | 4.25 ms, 0.961 |" in text
    assert "not run on a GPU yet" in text


def test_synthetic_embeddings_are_deterministic_and_normalised():
    sys.path.insert(0, str(ROOT))
    from tools.bench_search import D, Synthetic

    rng = np.random.default_rng(0)
    real = {
        "gallery": rng.standard_normal((500, 16)).astype(np.float32),
        "queries": rng.standard_normal((20, 16)).astype(np.float32),
        "x": rng.uniform(0, 2000, 500).astype(np.float32),
        "y": rng.uniform(0, 2000, 500).astype(np.float32),
    }
    synth = Synthetic(real)
    a = synth.chunk(0, 120_000)
    b = np.concatenate([synth.chunk(0, 70_001), synth.chunk(70_001, 120_000)])
    assert a.shape == (120_000, D) and np.array_equal(a, b)  # the same whatever the chunking
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    # Each synthetic chip stays near the real chip it was made from (id % N) ...
    lifted = synth._to_768(synth.real, np.random.default_rng(1))
    near = np.sum(a[:500] * lifted, axis=1)
    assert np.median(near) > 0.5
    # ... and a region of 10 % of the plane holds about 10 % of the chips.
    ids = synth.region(120_000, 0.1)
    assert 0.08 < len(ids) / 120_000 < 0.12


def test_tensorrt_gets_one_engine_profile_for_all_batch_sizes(tiny_bundle):
    """No GPU here, so the options are checked, not run: without a batch range TensorRT would
    build an engine per new batch size (a build's short last batch, a photo's rotations)."""
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders

    enc = Encoders(Bundle.load(tiny_bundle), batch_size=48)
    enc.providers = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    (name, opts), cpu = enc._provider_options("satellite")
    assert name == "TensorrtExecutionProvider" and cpu == "CPUExecutionProvider"
    assert opts["trt_profile_min_shapes"] == "pixel_values:1x3x32x32"
    assert opts["trt_profile_max_shapes"] == "pixel_values:48x3x32x32"
    assert opts["trt_engine_cache_enable"] is True
    (_, text_opts), _ = enc._provider_options("text")
    assert "trt_profile_min_shapes" not in text_opts  # token ids: another input, fixed shape
