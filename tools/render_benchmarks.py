"""Render docs/BENCHMARKS.md's tables from the benchmarks' JSON files.

    python tools/render_benchmarks.py [--doc docs/BENCHMARKS.md] [--bench out/bench]

Reads out/bench/engine/result.json (`make bench`), and where present out/bench/search/
result.json (`tools/bench_search.py`, the sweep and the engine's own search path), out/bench/
scale/scale-*.json (`tools/bench_scale.py`) and out/bench/gpu/result.json (`make bench-gpu`).
The text between `<!-- tables:start -->` and `<!-- tables:end -->` is replaced;
everything else in the document (the prose) is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
TARGET_MS, TARGET_RECALL = 10.0, 0.95


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(v, spec: str = ",.1f") -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def engine_table(r: dict) -> list[str]:
    modes = r.get("modes", {})

    def mode(step: str) -> str:
        m = modes.get(step)
        return f"{m['mode']} (load {m['load_average']:g})" if m else "not run"

    flags = r.get("cpu_flags", {})
    rows = [
        ("CPU", f"{r.get('cpu_model', '?')}; {r.get('machine', '')}", mode("cpu")),
        ("CPU flags", ", ".join(f for f, on in flags.items() if on) or "–", mode("cpu")),
    ]
    if "vitl14_fp32_ms_per_image" in r:
        d = r.get("vitl14_detail", {})
        rows += [
            (
                f"vit-l-14 satellite tower, fp32 (ms per image, batch {d.get('batch')}, no flip)",
                _num(r["vitl14_fp32_ms_per_image"]),
                mode("vitl14"),
            ),
            (
                "vit-l-14 satellite tower, int8 (ms per image)",
                _num(r["vitl14_int8_ms_per_image"]),
                mode("vitl14"),
            ),
            ("int8 speedup over fp32", f"{_num(r['vitl14_int8_speedup'], '.2f')}x", mode("vitl14")),
            (
                "int8 vs fp32, minimum cosine (our chips / exporter's verify set)",
                f"{_num(r['vitl14_int8_min_cos'], '.4f')} / "
                f"{_num(r.get('vitl14_int8_min_cos_exporter'), '.4f')}",
                mode("vitl14"),
            ),
            (
                "precision `auto` chooses on this CPU",
                r.get("vitl14_precision_chosen", "–"),
                mode("vitl14"),
            ),
        ]
        for label, ms in r.get("vitl14_int8_session_options_ms_per_image", {}).items():
            rows.append((f"int8 session, {label} (ms per image)", _num(ms), mode("vitl14")))
    b = r.get("index_build_chips_per_s_cpu")
    if b:
        d = r.get("index_build_detail_vitl14", {}).get("flip_on", {})
        rows.append(
            (
                f"index build, vit-l-14 {b['precision']}, {d.get('chips', '?')} chips: "
                "chips/s with flip / without",
                f"{_num(b['flip_on'], '.2f')} / {_num(b['flip_off'], '.2f')}",
                mode("build"),
            )
        )
    o = r.get("index_build_overlap_demo")
    if o:
        rows.append(
            (
                f"read-ahead, demo bundle, {o['chips']:,} chips: read alone / encode alone / "
                "read then encode / the build (chips/s)",
                f"{_num(o['read_only_chips_per_s'])} / {_num(o['encode_only_chips_per_s'])}"
                f" / {_num(o['read_then_encode_chips_per_s'])} / "
                f"{_num(o['build_chips_per_s'])} ({o['build_vs_read_then_encode']:.2f}x)",
                mode("build"),
            )
        )
        if "build_cores_busy" in o:
            rows.append(
                (
                    "the demo build: CPU seconds per wall second (cores busy, of "
                    f"{o.get('cores', '?')})",
                    f"{o['build_cores_busy']:.2f}",
                    mode("build"),
                )
            )
    e = r.get("search_exact_1e6_ms_per_query")
    if e:
        rows.append(
            (
                "exact search, one query over 1e6 x 768 fp32: numpy / faiss Flat 1 thread"
                " / 2 threads (ms)",
                f"{_num(e['numpy'])} / {_num(e['faiss_threads1'])} / {_num(e['faiss_threads2'])}",
                mode("search"),
            )
        )
    if "search_ann_index" in r:
        rows.append(
            (
                f"approximate, one query over 1e6 x 768: `{r['search_ann_index']}` (ms, recall@10)",
                f"{_num(r['search_ann_1e6_ms_per_query'], '.2f')} ms, "
                f"{_num(r['search_ann_1e6_recall_at_10'], '.3f')}",
                mode("search"),
            )
        )
        for label, v in r.get("search_ann_1e6_region_filter", {}).items():
            rows.append(
                (
                    f"the same with a region filter: {label}",
                    f"{_num(v['ms_per_query'], '.2f')} ms, {_num(v['recall_at_10'], '.3f')}",
                    mode("search"),
                )
            )
    f = r.get("flip_eval_demo")
    if f:
        for k in ("flip_on", "flip_off"):
            v = f[k]
            rows.append(
                (
                    f"demo evaluation ({f['photos']} photos, retrieval only), flip "
                    f"{k.split('_')[1]}: R@1 / R@5 / top-1 within 50 m / median error",
                    f"{v['R@1']:.1f} % / {v['R@5']:.1f} % / {v['top1_within_50m']:.1f} % / "
                    f"{v['median_error_m']:.0f} m",
                    mode("flip"),
                )
            )
    m = r.get("index_build_peak_rss_mb")
    if m:
        det = r.get("index_build_memory_detail", {})
        rows.append(
            (
                "index build peak memory, demo bundle: "
                + " vs ".join(f"{k} ({det.get(k, {}).get('chips', '?'):,} chips)" for k in m),
                " vs ".join(f"{v:,} MB" for v in m.values()),
                mode("memory"),
            )
        )
    if r.get("vitl14_fp16_chips_per_s_gpu"):
        rows.append(
            (
                f"vit-l-14 fp16 on {r['gpu']} (best over batch sizes)",
                f"{_num(r['vitl14_fp16_chips_per_s_gpu'])} chips/s",
                mode("gpu"),
            )
        )
    else:
        rows.append(("vit-l-14 fp16 on a GPU (`make bench-gpu`)", "not run on a GPU yet", "–"))
    out = ["| figure | value | run |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return out


def search_table(s: dict) -> list[str]:
    """Per candidate and gallery size: the cheapest setting that reaches the target recall."""
    out = [
        "| gallery | index | setting | recall@10 | ms/query (2 threads) | ms (1 thread) | "
        "10 % region: recall, ms | 1 % region: recall, ms | bytes/vector |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in ("1e5", "1e6"):
        for factory, row in s.get(n, {}).get("ann", {}).items():
            if not isinstance(row, dict) or "unfiltered" not in row:
                continue
            ok = [x for x in row["unfiltered"] if x["recall_at_10"] >= TARGET_RECALL]
            best = ok[0] if ok else row["unfiltered"][-1]
            param = "efSearch" if factory.startswith("HNSW") else "nprobe"
            cells = []
            for share in ("0.1", "0.01"):
                reg = row.get(f"region_{share}", {}).get("sweep", [])
                hit = next((x for x in reg if x["param"] == best["param"]), None)
                cells.append(f"{hit['recall_at_10']:.3f}, {hit['ms_threads2']:.2f}" if hit else "–")
            flag = "" if ok else " (best reached)"
            out.append(
                f"| {n} | `{factory}` | {param} {best['param']}{flag} | "
                f"{best['recall_at_10']:.3f} | {best['ms_threads2']:.2f} | "
                f"{best.get('ms_threads1', float('nan')):.2f} | {cells[0]} | {cells[1]} | "
                f"{row.get('bytes_per_vector', 0):,.0f} |"
            )
    return out


def engine_search_table(s: dict) -> list[str]:
    """The engine's own index and search path (bench_search.py's `engine` part), per size."""
    out = [
        "| gallery | index (nprobe) | filter | chips allowed | how | p50 / p95 ms | "
        "CPU ms p50 / p95 | recall@10 | load avg (1 min, before / after) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"unfiltered": "none", "box_10pct": "box, ~10 % of the area",
              "box_500m": "box, 500 m x 500 m"}  # fmt: skip
    for n, res in s.items():
        e = res.get("engine") if isinstance(res, dict) else None
        if not e:
            continue
        load = f"{e['load_avg_1_5_15'][0]} / {e.get('load_avg_1_5_15_after', ['?'])[0]}"
        for key, label in labels.items():
            row = e.get(key)
            if not row:
                continue
            plan = row.get("plan")
            how = "–" if not plan else ("exact" if plan[0] == "exact" else f"nprobe {plan[1]}")
            out.append(
                f"| {n} | `{e['factory']}` ({e['nprobe']}) | {label} | "
                f"{_num(row.get('chips'), ',')} | {how} | {row['p50_ms']:.2f} / "
                f"{row['p95_ms']:.2f} | {_num(row.get('cpu_p50_ms'), '.2f')} / "
                f"{_num(row.get('cpu_p95_ms'), '.2f')} | {row['recall_at_10']:.3f} | {load} |"
            )
    return out


def scale_table(runs: list[dict]) -> list[str]:
    """tools/bench_scale.py runs: the on-disk index, memory-mapped, per nprobe."""
    out = [
        "| vectors | index | nprobe | p50 / p95 ms | recall@10 | box: how | box p50 / p95 ms | "
        "box recall@10 | merge peak (anon) | index on disk |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: r.get("n", 0)):
        for row in r.get("search", []):
            plan = row.get("box_plan") or ["search_box", 0]
            how = "exact" if plan[0] == "exact" else f"nprobe {plan[1]}"
            out.append(
                f"| {r['n']:,} | `{r['factory']}` | {row['nprobe']} | {row['p50_ms']} / "
                f"{row['p95_ms']} | {row['recall@10']} | {how} | {row['box_p50_ms']} / "
                f"{row['box_p95_ms']} | {row['box_recall@10']} | "
                f"{r.get('merge_peak_anon_mb', '–')} MB | {r.get('index_gb', '–')} GB |"
            )
    return out


def gpu_table(g: dict) -> list[str]:
    out = [
        "| provider | batch: chips/s | best | session + first run | GPU memory peak |",
        "|---|---|---|---|---|",
    ]
    for p, row in g.get("encoder", {}).items():
        if "error" in row:
            out.append(f"| {p} | {row['error']} | | | |")
            continue
        rates = ", ".join(f"{b}: {v}" for b, v in row.get("chips_per_s", {}).items())
        out.append(
            f"| {p} | {rates} | {row.get('best_chips_per_s')} | "
            f"{row.get('session_and_first_run_s')} s | {row.get('gpu_memory_peak_mb')} MB |"
        )
    ib = g.get("index_build", {})
    if ib and "error" not in ib:
        out.append("")
        out.append(
            f"Index build over a synthetic raster ({ib.get('provider')}, batch "
            f"{ib.get('batch')}): reading alone {ib.get('read_only_chips_per_s')} chips/s; "
            + "; ".join(
                f"{k.replace('_', ' ')}: {v.get('chips_per_s')} chips/s"
                for k, v in ib.items()
                if k.startswith("flip_") and isinstance(v, dict)
            )
        )
    return out


def render(bench: Path) -> str:
    parts = []
    engine = _load(bench / "engine" / "result.json")
    if engine:
        parts += [
            "### Engine (`make bench` -> out/bench/engine/result.json)",
            "",
            *engine_table(engine),
            "",
        ]
    search = _load(bench / "search" / "result.json")
    if search:
        emb = search.get("embeddings", {})
        parts += [
            "### Search sweep (`tools/bench_search.py` -> out/bench/search/result.json)",
            "",
            f"Realistic embeddings from {emb.get('real_chips', '?'):,} real demo-model chip "
            f"embeddings, {emb.get('queries', '?')} real drone-photo queries, tail "
            f"{emb.get('tail', '?')} (see the tool's notes). Per index the first setting "
            f"of the sweep with recall@10 >= {TARGET_RECALL}; region columns at that "
            "setting, recall against exact search inside the region.",
            "",
            *search_table(search),
            "",
        ]
        if any(isinstance(v, dict) and "engine" in v for v in search.values()):
            parts += [
                "### The engine's index and search path (`tools/bench_search.py --skip exact,ann`)",
                "",
                "The index `index` writes above the exact limit, opened memory-mapped, searched "
                "through `core.search.VectorSearch` one query at a time on 2 threads, with "
                "and without a region filter; recall against exact search over the same "
                "(allowed) float32 vectors. The machine is shared: the load average says how "
                "busy its 2 cores were.",
                "",
                *engine_search_table(search),
                "",
            ]
    scale = [r for p in sorted((bench / "scale").glob("scale-*.json")) if (r := _load(p))]
    if scale:
        parts += [
            "### On-disk IVF at scale (`tools/bench_scale.py` -> out/bench/scale/)",
            "",
            "Built through the distributed build's merge path, opened memory-mapped; box: "
            "about a tenth of the area, its chip ids filtered by VectorSearch.",
            "",
            *scale_table(scale),
            "",
        ]
    gpu = _load(bench / "gpu" / "result.json")
    if gpu and gpu.get("gpu_info"):
        parts += [f"### GPU (`make bench-gpu` on {gpu['gpu']})", "", *gpu_table(gpu), ""]
    else:
        parts += [
            "### GPU (`make bench-gpu`)",
            "",
            'Not run on a GPU yet: no figures. `make bench-gpu` prints "no NVIDIA GPU" '
            "on a machine without one.",
            "",
        ]
    return "\n".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--doc", type=Path, default=ROOT / "docs/BENCHMARKS.md")
    ap.add_argument("--bench", type=Path, default=ROOT / "out/bench")
    args = ap.parse_args()
    text = args.doc.read_text() if args.doc.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{args.doc}: no {START} ... {END} markers to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.doc.write_text(f"{head}{START}\n{render(args.bench)}{END}{tail}")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
