"""python -m synthworld synth ...: write a synthetic world (satellite, drone photos, truth,
descriptions, vector scene) to a new folder (see synthworld/synth.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geobridge_qgis.core.errors import run_command


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


def add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size-km", type=float, required=True, help="side of the square world")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--gsd", type=float, default=0.5, help="satellite metres per pixel (0.5)")
    p.add_argument("--photos", type=int, default=40, help="drone photos (40)")
    p.add_argument("--no-exif", action="store_true", help="photos without EXIF/XMP metadata")
    p.set_defaults(func=cmd_synth)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m synthworld", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="write a synthetic world (satellite, drone photos, texts)")
    add_synth_args(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
