"""python -m model_export {export,verify,init} ... (see README)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geobridge_qgis.core.defaults import EXPORT_PRECISIONS
from geobridge_qgis.core.errors import UserError, run_command


def _config(args):
    from . import model as M

    if args.clip_config:
        return M.config_from_file(args.clip_config), f"clip-config:{Path(args.clip_config).name}"
    return M.preset_config(args.preset), f"preset:{args.preset}"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--preset", default="vit-l-14", help="model size (default: vit-l-14, the official)"
    )
    g.add_argument("--clip-config", type=Path, help="a HuggingFace CLIP config.json instead")


def cmd_export(args) -> int:
    from .export import export_bundle, parse_towers

    config, source = _config(args)
    export_bundle(
        args.checkpoint,
        args.out,
        config,
        source,
        precision=args.precision,
        towers=parse_towers(args.towers),
        name=args.name,
        license=args.license,
        trust_pickle=args.trust_pickle,
    )
    return 0


def cmd_verify(args) -> int:
    from .verify import verify

    reports = verify(args.checkpoint, args.bundle, trust_pickle=args.trust_pickle, n=args.n)
    for r in reports:
        print(r.line())
    return 0 if all(r.passed for r in reports) else 1


def cmd_init(args) -> int:
    """A checkpoint with random weights in the official layout (tests, benchmarks)."""
    import torch

    from . import model as M

    config, _ = _config(args)
    torch.manual_seed(args.seed)
    model = M.GeoBridge(config)
    state = model.state_dict()
    if args.out.exists():
        raise UserError(f"{args.out}: already exists")
    if args.out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(args.out))
    else:
        torch.save(state, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_synth(args) -> int:
    """A synthetic world: satellite GeoTIFF, drone photos, truth, descriptions, vector scene."""
    from .synth import synth

    synth(
        args.seed,
        args.size_km,
        args.out,
        gsd=args.gsd,
        photos=args.photos,
        exif=not args.no_exif,
    )
    return 0


def cmd_train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    if args.max_minutes:
        cfg.max_minutes = args.max_minutes
    if args.worlds:
        cfg.seeds = cfg.seeds[: args.worlds]
    train(cfg, args.out)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate, evaluate_refinement, refinement_table, table

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


def cmd_ablate(args) -> int:
    from .ablation import VARIANTS, ablate, table

    names = list(VARIANTS)
    if args.variants:
        names = [names[int(i)] for i in args.variants.split(",")]
    rows = ablate(args.out, args.steps, args.worlds, names, train_seed=args.train_seed)
    print(table(rows))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="checkpoint -> ONNX bundle")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    _add_config_args(p)
    p.add_argument(
        "--precision",
        default=",".join(EXPORT_PRECISIONS),
        help="precisions to write, comma separated; the first is the reference and the others "
        f"are verified against it (default {','.join(EXPORT_PRECISIONS)}: fp16 runs on GPUs, "
        "int8 on CPUs)",
    )
    p.add_argument("--towers", default="drone,satellite,street,text")
    p.add_argument("--name", default="GeoBridge", help="model name shown to users")
    p.add_argument(
        "--license", default="unstated", help="the licence of the weights, as you know it"
    )
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow a whole-model pickle (runs code)"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare a bundle with its checkpoint")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--n", type=int, default=32, help="inputs per tower")
    p.add_argument("--trust-pickle", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("init", help="write a random-weight checkpoint (tests, benchmarks)")
    p.add_argument("--out", type=Path, required=True, help=".pth or .safetensors")
    _add_config_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("synth", help="write a synthetic world (satellite, drone photos, texts)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size-km", type=float, required=True, help="side of the square world")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--gsd", type=float, default=0.5, help="satellite metres per pixel (0.5)")
    p.add_argument("--photos", type=int, default=40, help="drone photos (40)")
    p.add_argument("--no-exif", action="store_true", help="photos without EXIF/XMP metadata")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train the demo GeoBridge on synthetic worlds (CPU)")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint and log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="optimiser steps (default 400)")
    p.add_argument("--worlds", type=int, help="number of training worlds (default 12)")
    p.add_argument("--max-minutes", type=float, help="stop training after this long (25)")
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_eval)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
