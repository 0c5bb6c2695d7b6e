"""`python -m geolab ablate`: what each training choice brings, measured.

One set of training pairs is rendered (fewer worlds than the shipped model's, to leave time for
several runs); then each variant of `VARIANTS` trains from the same seed for the same number of
optimiser steps (not minutes: other work on the machine must not change the comparison), is
exported with the same exporter as the demo model, and is evaluated with
`evaluate.evaluate` on a held-out world (the seed and size of the demo-model floor test). The
table compares variants with one another, not with the shipped model (which trains 25 minutes
on 12 worlds): a short budget, one seed, 40 queries, so differences of a few points are noise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from model_export.export import export_bundle
from model_export.model import preset_config
from synthworld.synth import synth

from .evaluate import evaluate
from .pairs import render_pairs
from .train import TrainConfig, train

VARIANTS: dict[str, dict] = {
    "as shipped (augmentation, multi-scale crops)": {},
    "no augmentation": {"augment": False},
    "single-scale crops (125 m)": {"multi_scale": False},
    "+ hard negatives (half-batch neighbourhoods)": {"hard_negatives": True},
}
HELDOUT_SEED, HELDOUT_KM = 11, 1.0
COLUMNS = [
    ("drone->satellite", "rot-TTA", "R@1"),
    ("drone->satellite", "rot-TTA", "R@5"),
    ("drone->satellite", "rot-TTA", "R@1%"),
    ("drone->satellite", "rot-TTA", "L@100"),
    ("text->satellite", "model", "R@5"),
]


def ablate(
    out: Path,
    steps: int = 100,
    worlds: int = 4,
    variants: list[str] | None = None,
    log: Callable[[str], None] = print,
    train_seed: int = 0,
) -> list[dict]:
    """Train, export and evaluate each variant; `train_seed` changes the initialisation and
    batch order only (the pairs stay the same), to show how much one seed's luck weighs."""
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(seeds=TrainConfig().seeds[:worlds], steps=steps, warmup=max(1, steps // 10),
                       max_minutes=600.0, heldout_seed=None)  # fmt: skip
    heldout = out / "heldout"
    if not heldout.exists():
        synth(HELDOUT_SEED, HELDOUT_KM, heldout, photos=40, log=log)
    px = preset_config("demo").vision_config.image_size
    t0 = time.perf_counter()
    log(f"rendering {worlds * base.views_per_world:,} pairs from {worlds} worlds")
    pairs = render_pairs(base, px, log)
    log(f"  {time.perf_counter() - t0:.0f} s")
    rows = []
    for name in variants or list(VARIANTS):
        cfg = replace(base, seed=train_seed, **VARIANTS[name])
        run = out / name.split(" (")[0].replace(" ", "-").replace("+", "plus")
        if train_seed:
            run = run.with_name(f"{run.name}-seed{train_seed}")
        log(f"{name}: training {cfg.steps} steps")
        ckpt = train(cfg, run / "train", log=lambda _m: None, pairs=pairs)
        # This variant's own count (a resumed or budget-cut run may differ from cfg.steps).
        steps_done = json.loads((run / "train" / "train.json").read_text())["steps_done"]
        log(f"  {name}: {steps_done} steps done")
        bundle = run / "bundle"
        if not bundle.exists():
            export_bundle(ckpt, bundle, preset_config("demo"), "preset:demo",
                          towers=("drone", "satellite", "text"), log=lambda _m: None)  # fmt: skip
        metrics = evaluate(bundle, heldout, run / "eval")
        get = {(r["direction"], r["method"]): r for r in metrics}
        row = {"variant": name + (f" [train seed {train_seed}]" if train_seed else ""),
               "steps": steps_done}  # fmt: skip
        row.update({f"{d} {k}": get[(d, m)][k] for d, m, k in COLUMNS})
        rows.append(row)
        log("  " + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)))
    name = f"ablation-seed{train_seed}.json" if train_seed else "ablation.json"
    (out / name).write_text(json.dumps(rows, indent=1))
    return rows


def table(rows: list[dict]) -> str:
    keys = [f"{d} {k}" for d, _m, k in COLUMNS]
    head = ["variant", "steps"] + [k.replace("drone->satellite", "d->s").replace(
        "text->satellite", "t->s") for k in keys]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        vals = [r["variant"], str(r["steps"])] + [f"{r[k]:.1f}" for k in keys]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)
