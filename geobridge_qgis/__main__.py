"""Headless GeoBridge: `python -m geobridge_qgis {index,locate,info} ...` (see README).

A user's mistake ends with one line on stderr and exit code 2; progress goes to stderr; results
(with --json) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from geobridge_qgis.core import defaults


class Progress:
    """A progress bar on stderr (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, label: str):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int, rate: float) -> None:
        frac = done / max(total, 1)
        eta = (total - done) / max(rate, 1e-9)
        text = f"{self.label}: {done:,}/{total:,} ({frac:.0%}) {rate:.0f}/s, {eta:.0f} s left"
        if self.tty:
            bar = "#" * int(frac * 30)
            end = "\n" if done >= total else ""
            print(f"\r[{bar:30s}] {text}", end=end, file=sys.stderr, flush=True)
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            print(text, file=sys.stderr, flush=True)


def _csv(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas: {text}") from None


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(float(v)) for v in _floats(text))
    if any(v % 90 for v in values):
        raise argparse.ArgumentTypeError("rotations must be multiples of 90 degrees")
    return values


def cmd_index(args) -> int:
    from geobridge_qgis.core import service
    from geobridge_qgis.core.errors import Cancelled

    request = service.IndexRequest(
        bundle=args.bundle,
        raster=args.raster,
        out=args.out,
        region=args.region or args.bbox,
        chip_sizes=args.chip_sizes,
        overlap=args.overlap,
        tower=args.tower,
        max_chips=args.max_chips,
        exact_max_chips=args.exact_max_chips,
        providers=args.providers,
        batch_size=args.batch_size,
        precision=args.precision,
        flip=not args.no_flip,
    )
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        if args.engine == "ray":
            done = _build_on_ray(request, args, log)
        else:
            done = service.build_index(request, Progress("index"), log=log)
    except (Cancelled, KeyboardInterrupt):
        print("stopped; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"wrote {done.folder}: {done.count:,} chips ({done.skipped:,} skipped as "
          f"nodata or blank)", file=sys.stderr)  # fmt: skip
    return 0


def _build_on_ray(request, args, log) -> Any:
    """The distributed build; its package (and Ray) is imported only here."""
    from geobridge_qgis.core.errors import UserError

    try:
        from geobridge_scale.build import build_index_ray
    except ImportError as e:
        raise UserError(
            f"--engine ray needs the scale extras ({e.name} is missing); run: make setup SCALE=1"
        ) from None
    return build_index_ray(request, address=args.ray_address, block_m=args.block_m,
                           factory=args.factory, progress=Progress("index"), log=log)  # fmt: skip


def locate_request(args) -> Any:
    """The locate flags as a service request."""
    from geobridge_qgis.core import service

    no_priors = args.no_priors
    return service.LocateRequest(
        bundle=args.bundle,
        index=args.index,
        photos=args.photo or (),
        text=args.text,
        view=args.view,
        text_weight=args.text_weight,
        top_k=args.top_k,
        rotations=(0,) if args.no_rotate else args.rotations,
        region=args.region or args.bbox,
        rerank=not args.no_rerank,
        refine=not args.no_refine,
        rerank_top=args.rerank_top,
        use_gps=not (no_priors or args.no_gps),
        use_altitude=not (no_priors or args.no_altitude),
        use_heading=not (no_priors or args.no_heading),
        gps_radius_m=args.gps_radius,
        out=args.out,
        heatmap_tif=args.heatmap,
        providers=args.providers,
        precision=args.precision,
    )


def cmd_locate(args) -> int:
    from pyproj import CRS

    from geobridge_qgis.core import service
    from geobridge_qgis.core.errors import UserError

    if not args.photo and not args.text:
        raise UserError("give --photo, --text or both")
    outcome = service.locate(locate_request(args), log=lambda s: print(s, file=sys.stderr))
    crs = CRS.from_wkt(outcome.crs_wkt)
    out_json = []
    for q in outcome.queries:
        if q.prior_circle and not args.json:
            lon, lat, r = q.prior_circle
            print(f"{q.label}: its metadata puts the view centre at {lon:.6f}, {lat:.6f} "
                  f"(search radius {r:.0f} m)")  # fmt: skip
        if not args.json:
            print(service.summary_line(q))
        query = str(q.photo) if q.photo else args.text
        for c in q.candidates:
            row = {"query_id": q.query_id, "query": query, "priors_used": q.priors_used}
            out_json.append({**row, **c.as_dict(crs)})
    for path in (args.out, args.heatmap):
        if path and Path(path).exists():
            print(f"wrote {path}", file=sys.stderr)
        elif path:  # an approximate index scores only the chips it visits: no heat map
            print(f"{path}: not written (this index has no heat map)", file=sys.stderr)
    if args.json:
        json.dump(out_json, sys.stdout, indent=1)
        print()
    return 0


def cmd_info(args) -> int:
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders

    bundle = Bundle.load(args.bundle)
    encoders = Encoders(bundle, defaults.provider_names(args.providers), precision=args.precision)
    info = {
        "name": bundle.name,
        "model_id": bundle.model_id,
        "embed_dim": bundle.embed_dim,
        "precisions": bundle.precisions,
        "precision": encoders.precision,  # what runs here (measured once on a CPU)
        "towers": list(bundle.towers),
        "providers": encoders.providers,
        "device": encoders.device,
        "threads": encoders.threads,
    }
    print(json.dumps(info, indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m geobridge_qgis", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
        p.add_argument(
            "--providers",
            help=f"e.g. cuda,cpu (default: {','.join(defaults.PROVIDERS)} as available)",
        )
        p.add_argument(
            "--precision",
            default=defaults.PRECISION,
            choices=("auto", "fp32", "fp16", "int8"),
            help="encoder precision (auto: fp16 on a GPU, int8 on a CPU where faster; locate: "
            "the precision that built the index)",
        )

    def region(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--region", type=Path, help="vector file: search inside its polygons")
        g.add_argument("--bbox", help="x1,y1,x2,y2[,EPSG:n] (default CRS: the raster's)")

    p = sub.add_parser("index", help="embed a raster's chip grid into a reference index")
    common(p)
    p.add_argument("--raster", required=True, help="GeoTIFF/COG/VRT, or a GDAL WMS/XYZ source")
    region(p)
    p.add_argument("--chip-sizes", type=_floats, default=defaults.CHIP_SIZES,
                   help=f"metres ({_csv(defaults.CHIP_SIZES)})")  # fmt: skip
    p.add_argument("--overlap", type=float, default=defaults.OVERLAP,
                   help=f"share of a chip its neighbour overlaps ({defaults.OVERLAP})")  # fmt: skip
    p.add_argument("--tower", default=defaults.TOWER)
    p.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    p.add_argument("--max-chips", type=int, default=defaults.MAX_CHIPS,
                   help=f"refuse a larger grid ({defaults.MAX_CHIPS:,})")  # fmt: skip
    p.add_argument("--exact-max-chips", type=int, default=defaults.EXACT_MAX_CHIPS,
                   help="an exact index up to this many chips, approximate (IVF,SQ8) above "
                   f"({defaults.EXACT_MAX_CHIPS:,})")  # fmt: skip
    p.add_argument("--no-flip", action="store_true",
                   help="no flip test-time augmentation: about twice as fast, slightly less "
                   "accurate; queries of the index skip it too")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="index folder to create")
    g = p.add_argument_group("distributed build (make setup SCALE=1; see docs/SCALE.md)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (no --max-chips cap)")  # fmt: skip
    g.add_argument("--ray-address", help="HOST:PORT of a Ray cluster (default: a local Ray)")
    g.add_argument("--block-m", type=float, default=2000.0,
                   help="side of a work block in metres (2000); the unit of resume")  # fmt: skip
    g.add_argument("--factory", help="FAISS index, e.g. IVF4096,SQ8 (default: by chip count)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("locate", help="where was this photo taken / is this place")
    common(p)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--photo", type=Path, action="append", help="repeat for several photos")
    p.add_argument("--view", default=defaults.VIEW, choices=defaults.VIEWS)
    p.add_argument("--text", help="a description of the place")
    p.add_argument("--text-weight", type=float, default=defaults.TEXT_WEIGHT,
                   help=f"weight of --text with --photo ({defaults.TEXT_WEIGHT})")  # fmt: skip
    p.add_argument("--rotations", type=_ints, default=defaults.ROTATIONS,
                   help=f"degrees ({_csv(defaults.ROTATIONS)})")  # fmt: skip
    p.add_argument("--no-rotate", action="store_true", help="photo is north-up: no rotations")
    p.add_argument("--top-k", type=int, default=defaults.TOP_K)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--region", type=Path, help="search only inside these polygons")
    g.add_argument("--bbox", help="x1,y1,x2,y2[,EPSG:n] (default CRS: the index's)")
    p.add_argument("--out", type=Path, help="results GeoPackage")
    p.add_argument("--json", action="store_true", help="print candidates as JSON to stdout")
    p.add_argument("--heatmap", type=Path, help="also write the (first) query's heat map GeoTIFF")
    g = p.add_argument_group("re-ranking and refinement (on by default; see core/refine.py)")
    g.add_argument("--no-rerank", action="store_true", help="retrieval order only")
    g.add_argument("--no-refine", action="store_true", help="re-rank, but keep chip locations")
    g.add_argument("--rerank-top", type=int, default=defaults.RERANK_TOP,
                   help=f"candidates to match ({defaults.RERANK_TOP})")  # fmt: skip
    g = p.add_argument_group("priors from the photo's EXIF/XMP (on by default; see core/priors.py)")
    g.add_argument("--no-priors", action="store_true", help="ignore the photo's metadata")
    g.add_argument("--no-gps", action="store_true", help="do not limit the search by GPS")
    g.add_argument(
        "--gps-radius",
        type=float,
        help=f"GPS uncertainty in metres (EXIF, else {defaults.GPS_RADIUS_M:g})",
    )
    g.add_argument("--no-altitude", action="store_true", help="no chip scale from altitude")
    g.add_argument("--no-heading", action="store_true", help="try all rotations despite a heading")
    p.set_defaults(func=cmd_locate)

    p = sub.add_parser("info", help="bundle and device")
    common(p)
    p.set_defaults(func=cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    from geobridge_qgis.core.errors import run_command

    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
