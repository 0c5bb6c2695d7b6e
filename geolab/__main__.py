"""python -m geolab {train,ablate,eval} ...: train the demo GeoBridge on synthetic worlds,
compare training choices, and measure a bundle on a synthetic world (see README)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geobridge_qgis.core.errors import UserError, run_command


def cmd_train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    if args.max_minutes:
        cfg.max_minutes = args.max_minutes
    if args.lr:
        cfg.lr = args.lr
    if args.init:
        cfg.init = str(args.init.resolve())
        cfg.warmup = 20
    cfg.hard_negatives = args.hard_negatives
    for name in ("batch", "warmup", "workers"):
        if getattr(args, name):
            setattr(cfg, name, getattr(args, name))
    cfg.device = args.device
    if args.pairs_cache:
        cfg.pairs_cache = str(args.pairs_cache.resolve())
    if args.worlds:
        # Seeds 1000, 1001, ...: more worlds than the default take the next seeds.
        cfg.seeds = tuple(range(cfg.seeds[0], cfg.seeds[0] + args.worlds))
    train(cfg, args.out)
    return 0


def cmd_average(args) -> int:
    from .train import average_checkpoints

    for p in args.checkpoints:
        if not p.is_file():
            raise UserError(f"{p}: no such checkpoint")
    print(f"wrote {average_checkpoints(args.checkpoints, args.out)}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate, evaluate_refinement, refinement_table, table

    if args.levels:
        from .levels import evaluate_levels

        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        worlds = [args.world, *args.also]
        md = evaluate_levels(args.bundle, worlds, args.out, photos=args.photos,
                             yaw=not args.no_yaw, log=log)  # fmt: skip
        print(md)
        print(f"wrote {args.out}/levels.md and levels.json")
        return 0
    if not args.refine_only:
        rows = evaluate(args.bundle, args.world, args.out)
        print(table(rows))
        print(f"wrote {args.out}/metrics.json and top-k CSVs")
    if not args.no_refine:
        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        rows = evaluate_refinement(args.bundle, args.world, args.out, not args.no_priors, log)
        print(refinement_table(rows))
        print(f"wrote {args.out}/refinement.json")
    return 0


def cmd_calibrate(args) -> int:
    from .calibrate import calibrate

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    table, floor = calibrate(args.bundle, args.world, args.out, args.photos, log)
    print("CALIBRATION = {")
    for kind, (a, b) in table.items():
        print(f'    "{kind}": ({a}, {b}),')
    print("}")
    print(f"REFINED_SIGMA_FLOOR_M = {floor}  # None: too few refined candidates to fit")
    print(f"wrote {args.out}/calibration.json")
    return 0


def cmd_ablate(args) -> int:
    from .ablation import VARIANTS, ablate, table

    names = list(VARIANTS)
    if args.variants:
        names = [names[int(i)] for i in args.variants.split(",")]
    rows = ablate(args.out, args.steps, args.worlds, names, train_seed=args.train_seed)
    print(table(rows))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m geolab", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the demo GeoBridge on synthetic worlds")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint and log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="optimiser steps (default 400)")
    p.add_argument("--worlds", type=int, help="number of training worlds (default 12)")
    p.add_argument("--max-minutes", type=float, help="stop training after this long (25)")
    p.add_argument("--init", type=Path, help="a second stage: start from this geobridge-demo.pth")
    p.add_argument("--lr", type=float, help="peak learning rate (5e-4)")
    p.add_argument(
        "--hard-negatives",
        action="store_true",
        help="half of each batch from one neighbourhood (for a second stage)",
    )
    p.add_argument("--batch", type=int, help="pairs per step (128)")
    p.add_argument("--warmup", type=int, help="warm-up steps (40; 20 with --init)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: an NVIDIA GPU")
    p.add_argument("--workers", type=int, help="processes rendering worlds side by side (1)")
    p.add_argument("--pairs-cache", type=Path, help="keep rendered pairs in this folder for "
                   "later runs of the same worlds")  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("average", help="average checkpoints' weights (the demo model's stages)")
    p.add_argument("checkpoints", type=Path, nargs="+", help="geobridge-demo.pth files")
    p.add_argument("--out", type=Path, required=True, help="the averaged geobridge-demo.pth")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("ablate", help="train variants briefly and compare them (ablation.py)")
    p.add_argument("--out", type=Path, default=Path("out/ablation"))
    p.add_argument("--steps", type=int, default=100, help="optimiser steps per variant (100)")
    p.add_argument("--worlds", type=int, default=4, help="training worlds (4)")
    p.add_argument("--variants", help="indexes into ablation.VARIANTS, e.g. 0,2 (all)")
    p.add_argument("--train-seed", type=int, default=0, help="training seed (pairs unchanged)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("eval", help="the paper's metrics on a synthetic world")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("out/eval"))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-refine", action="store_true", help="skip the re-ranking/refinement table")
    g.add_argument("--refine-only", action="store_true", help="only that table")
    p.add_argument("--no-priors", action="store_true", help="that table without the prior rows")
    p.add_argument("--levels", action="store_true",
                   help="per metadata level (none/gps/full, realistic noise), tilt band and "
                        "yaw error, with the reliability table (geolab/levels.py)")  # fmt: skip
    p.add_argument("--also", type=Path, nargs="*", default=[], help="more worlds (--levels)")
    p.add_argument("--photos", type=int, help="first N photos per world (--levels; all)")
    p.add_argument("--no-yaw", action="store_true", help="--levels without the yaw-error table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="fit the candidates' probabilities on a training world")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--world", type=Path, required=True, help="a world never used to evaluate")
    p.add_argument("--out", type=Path, default=Path("out/calibrate"))
    p.add_argument("--photos", type=int, help="first N photos (all)")
    p.set_defaults(func=cmd_calibrate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
