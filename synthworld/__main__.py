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
        errors=error_model(args),
        tilt_deg=tuple(args.tilt),
        altitude_m=tuple(args.altitude),
        sat_style=args.satellite_style,
    )
    return 0


ERROR_HELP = {
    "gps_sigma_m": "GNSS horizontal error, metres per axis (one sigma)",
    "gps_jump_rate": "share of photos with a multipath jump",
    "gps_jump_m": "size of a jump, metres (low high)",
    "gps_alt_sigma_m": "GPS altitude error, metres",
    "yaw_sigma_deg": "gimbal yaw error, degrees",
    "yaw_error_deg": "a fixed gimbal yaw error instead (random sign), degrees",
    "flight_yaw_sigma_deg": "flight (body) yaw minus the camera's heading, degrees",
    "pitch_sigma_deg": "gimbal pitch error, degrees",
    "baro_sigma_m": "relative (barometric) altitude error, metres",
    "takeoff_dz_sigma_m": "take-off ground height above the photo's ground, metres",
    "share_none": "share of photos without metadata",
    "share_gps_only": "share of photos with the GPS position only",
}


def error_model(args):
    """The MetadataErrors the flags ask for (--exact-metadata: no error at all)."""
    from dataclasses import replace

    from .metadata_errors import MetadataErrors

    base = MetadataErrors.exact() if args.exact_metadata else MetadataErrors()
    given = {k: getattr(args, "err_" + k) for k in ERROR_HELP}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}
    return replace(base, **given)


def add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size-km", type=float, required=True, help="side of the square world")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--gsd", type=float, default=0.5, help="satellite metres per pixel (0.5)")
    p.add_argument("--photos", type=int, default=40, help="drone photos (40)")
    p.add_argument("--no-exif", action="store_true", help="photos without EXIF/XMP metadata")
    p.add_argument(
        "--tilt",
        type=float,
        nargs=2,
        default=[0.0, 35.0],
        metavar=("MIN", "MAX"),
        help="camera degrees off nadir (0 35; up to 85 for evaluation worlds)",
    )
    p.add_argument(
        "--altitude",
        type=float,
        nargs=2,
        default=[60.0, 150.0],
        metavar=("MIN", "MAX"),
        help="camera height above ground, metres (60 150)",
    )
    p.add_argument(
        "--satellite-style",
        default="default",
        choices=("default", "held-out"),
        help="the satellite look (held-out: one no training world has)",
    )
    g = p.add_argument_group("metadata error model (synthworld/metadata_errors.py)")
    g.add_argument(
        "--exact-metadata",
        action="store_true",
        help="metadata without error (the flags below then add to nothing)",
    )
    for name, text in ERROR_HELP.items():
        flag = "--" + name.replace("_", "-")
        if name == "gps_jump_m":
            g.add_argument(flag, dest="err_" + name, type=float, nargs=2, help=text)
        else:
            g.add_argument(flag, dest="err_" + name, type=float, help=text)
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
