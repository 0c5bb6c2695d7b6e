"""python -m model_export {export,verify,init} ...: a GeoBridge checkpoint -> a verified ONNX
bundle.

  export   checkpoint -> ONNX bundle (towers, precision, tokenizer, manifest)
  verify   compare a bundle's outputs with its checkpoint's
  init     write a random-weight checkpoint in the official layout (tests, benchmarks)
  recover  read a fp32 bundle's weights back into a checkpoint (to train on from a shipped model)

The export benchmark is `python -m model_export.bench_export`. The synthetic world and the lab
have packages of their own: `python -m synthworld synth`, `python -m geolab train|ablate|eval`;
`python -m model_export synth|train|ablate|eval` still forward there for one release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geobridge_qgis.core.defaults import EXPORT_PRECISIONS
from geobridge_qgis.core.errors import run_command
from geobridge_qgis.core.outputs import check_new_folder

# Commands that moved to their own packages: deprecated aliases, kept for one release.
MOVED = {"synth": "synthworld", "train": "geolab", "ablate": "geolab", "eval": "geolab"}


def _config(args):
    from .model import config_from_file, preset_config

    if args.clip_config:
        return config_from_file(args.clip_config), f"clip-config:{Path(args.clip_config).name}"
    return preset_config(args.preset), f"preset:{args.preset}"


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

    from .model import GeoBridge

    config, _ = _config(args)
    torch.manual_seed(args.seed)
    model = GeoBridge(config)
    state = model.state_dict()
    check_new_folder(args.out)
    if args.out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(args.out))
    else:
        torch.save(state, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_recover(args) -> int:
    """A checkpoint read back from a fp32 bundle, checked to carry the manifest's model id."""
    import torch

    from .recover import recover

    check_new_folder(args.out)
    model, model_id = recover(args.bundle)
    torch.save(model.state_dict(), args.out)
    towers = ", ".join(model.towers)
    print(f"wrote {args.out} (towers {towers}; model {model_id}, as the manifest says)")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m model_export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

    p = sub.add_parser("recover", help="read a fp32 bundle's weights back into a checkpoint")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help=".pth to write")
    p.set_defaults(func=cmd_recover)

    for name, target in MOVED.items():
        help_ = f"moved: python -m {target} {name} (this alias goes in the next release)"
        sub.add_parser(name, add_help=False, help=help_)
    return ap


def _forward(argv: list[str]) -> int:
    """Run a moved command in its new package (the aliases stay for one release)."""
    name, target = argv[0], MOVED[argv[0]]
    print(f"note: `python -m model_export {name}` is now `python -m {target} {name}`; "
          "this alias goes in the next release", file=sys.stderr)  # fmt: skip
    if target == "synthworld":
        from synthworld.__main__ import main as moved_main
    else:
        from geolab.__main__ import main as moved_main
    return moved_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in MOVED:
        return _forward(argv)
    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
