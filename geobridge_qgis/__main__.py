"""Headless GeoBridge: `python -m geobridge_qgis {index,locate,info} ...` (see README).

A user's mistake ends with one line on stderr and exit code 2; progress goes to stderr; results
(with --json) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


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


def _providers(text: str | None):
    if not text:
        return None
    names = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}  # fmt: skip
    return [names.get(p.strip().lower(), p.strip()) for p in text.split(",")]


def _region(args, ds=None):
    from geobridge_qgis.core.tiling import Region

    if getattr(args, "region", None):
        return Region.from_file(args.region)
    if getattr(args, "bbox", None):
        from pyproj import CRS

        default = CRS.from_wkt(ds.GetProjection()) if ds is not None else None
        return Region.from_bbox(args.bbox, default)
    return None


def cmd_index(args) -> int:
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.index import Cancelled, build_index
    from geobridge_qgis.core.tiling import open_raster

    bundle = Bundle.load(args.bundle)
    encoders = Encoders(bundle, _providers(args.providers), batch_size=args.batch_size)
    region = _region(args, open_raster(args.raster))
    try:
        out = build_index(
            encoders,
            args.raster,
            args.out,
            region=region,
            chip_sizes=args.chip_sizes,
            overlap=args.overlap,
            tower=args.tower,
            max_chips=args.max_chips,
            progress=Progress("index"),
            on_estimate=lambda e: print(f"plan: {e.line()} on {encoders.device}", file=sys.stderr),
        )
    except (Cancelled, KeyboardInterrupt):
        print("stopped; run the same command again to resume", file=sys.stderr)
        return 130
    manifest = json.loads((out / "index.json").read_text())
    print(f"wrote {out}: {manifest['count']:,} chips ({manifest['skipped']:,} skipped as "
          f"nodata or blank)", file=sys.stderr)  # fmt: skip
    return 0


def _sha256(path: Path) -> str:
    from geobridge_qgis.core.bundle import sha256_file

    return sha256_file(path, cache=False)


def query_options(args, region=None):
    """QueryOptions from the locate flags (shared with nothing else: the CLI's own mapping)."""
    from geobridge_qgis.core.locate import QueryOptions
    from geobridge_qgis.core.priors import PriorOptions

    no_priors = args.no_priors
    return QueryOptions(
        top_k=args.top_k,
        rotations=(0,) if args.no_rotate else args.rotations,
        view=args.view,
        text_weight=args.text_weight,
        region=region,
        heatmap=bool(args.out or args.heatmap),
        rerank=not args.no_rerank,
        refine=not args.no_refine,
        rerank_top=args.rerank_top,
        priors=PriorOptions(
            gps=not (no_priors or args.no_gps),
            altitude=not (no_priors or args.no_altitude),
            heading=not (no_priors or args.no_heading),
            gps_radius_m=args.gps_radius,
        ),
    )


def cmd_locate(args) -> int:
    from geobridge_qgis.core import locate as L
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.errors import UserError
    from geobridge_qgis.core.index import Index
    from geobridge_qgis.core.photo import read_photo_with_meta
    from geobridge_qgis.core.results import (
        QueryRecord,
        check_writable,
        write_heatmap_tif,
        write_results,
    )

    if not args.photo and not args.text:
        raise UserError("give --photo, --text or both")
    for path in (args.out, args.heatmap):
        if path:
            check_writable(path)
    bundle = Bundle.load(args.bundle)
    index = Index.open(args.index, bundle)
    # All photos are checked before any work.
    photos = [(p, *read_photo_with_meta(p)) for p in args.photo or []]
    encoders = Encoders(bundle, _providers(args.providers))
    options = query_options(args, _region(args))
    matcher = None
    if photos and options.rerank:
        matcher, why = L.matcher_for(index)
        if why:
            print(why, file=sys.stderr)
    text_emb = encoders.encode_text([args.text]) if args.text else None
    queries = photos or [(None, None, None)]
    items, out_json = [], []
    for qid, (path, img, meta) in enumerate(queries, start=1):
        t0 = time.perf_counter()
        result = L.locate_query(index, encoders, img, meta, text_emb, options, matcher)
        kind = "+".join(k for k, v in (("photo", path), ("text", args.text)) if v)
        record = QueryRecord(
            query_id=qid, kind=kind, model_id=bundle.model_id, index_id=index.index_id,
            file=str(path) if path else None, sha256=_sha256(path) if path else None,
            text=args.text, device=encoders.device, seconds=time.perf_counter() - t0,
            parameters=options.as_dict(), priors_used=result.priors_used, notes=result.notes,
        )  # fmt: skip
        items.append((record, result, index.crs))
        for c in result.candidates:
            query = str(path) if path else args.text
            row = {"query_id": qid, "query": query, "priors_used": result.priors_used}
            out_json.append({**row, **c.as_dict(index.crs)})
        label = path.name if path else f'"{args.text[:40]}"'
        for note in result.notes:
            print(f"{label}: {note}", file=sys.stderr)
        if result.prior_circle and not args.json:
            lon, lat, r = result.prior_circle
            print(f"{label}: its metadata puts the view centre at {lon:.6f}, {lat:.6f} "
                  f"(search radius {r:.0f} m)")  # fmt: skip
        if not args.json:
            best = result.candidates[0] if result.candidates else None
            if best:
                n = len(result.candidates)
                extra = ""
                if best.method == "refined":
                    extra = (
                        f", +/- {best.centre_sigma_m:.1f} m, heading {best.heading_deg:.0f} deg, "
                        f"{best.match.inliers} inliers"
                    )
                print(
                    f"{label}: top-1 {best.lon:.6f}, {best.lat:.6f} score {best.score:.3f} "
                    f"p {best.probability:.2f} ({best.method}{extra}; {n} candidates)"
                )
            else:
                print(f"{label}: no candidate (the region or priors leave no chip)")
    if args.out:
        write_results(args.out, items)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.heatmap and items[0][1].heatmap is not None:
        write_heatmap_tif(args.heatmap, items[0][1].heatmap)
        print(f"wrote {args.heatmap}", file=sys.stderr)
    if args.json:
        json.dump(out_json, sys.stdout, indent=1)
        print()
    return 0


def cmd_info(args) -> int:
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders

    bundle = Bundle.load(args.bundle)
    encoders = Encoders(bundle, _providers(args.providers))
    info = {
        "name": bundle.name,
        "model_id": bundle.model_id,
        "embed_dim": bundle.embed_dim,
        "precision": bundle.precision,
        "towers": list(bundle.towers),
        "providers": encoders.providers,
        "device": encoders.device,
    }
    print(json.dumps(info, indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m geobridge_qgis", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
        p.add_argument(
            "--providers", help="e.g. cuda,cpu (default: tensorrt,cuda,cpu as available)"
        )

    def region(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--region", type=Path, help="vector file: search inside its polygons")
        g.add_argument("--bbox", help="x1,y1,x2,y2[,EPSG:n] (default CRS: the raster's)")

    p = sub.add_parser("index", help="embed a raster's chip grid into a reference index")
    common(p)
    p.add_argument("--raster", required=True, help="GeoTIFF/COG/VRT, or a GDAL WMS/XYZ source")
    region(p)
    p.add_argument("--chip-sizes", type=_floats, default=(100.0, 150.0), help="metres (100,150)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--tower", default="satellite")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-chips", type=int, default=250_000)
    p.add_argument("--out", type=Path, required=True, help="index folder to create")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("locate", help="where was this photo taken / is this place")
    common(p)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--photo", type=Path, action="append", help="repeat for several photos")
    p.add_argument("--view", default="drone", choices=["drone", "street"])
    p.add_argument("--text", help="a description of the place")
    p.add_argument("--text-weight", type=float, default=0.5, help="weight of --text with --photo")
    p.add_argument("--rotations", type=_ints, default=(0, 90, 180, 270))
    p.add_argument("--no-rotate", action="store_true", help="photo is north-up: no rotations")
    p.add_argument("--top-k", type=int, default=10)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--region", type=Path, help="search only inside these polygons")
    g.add_argument("--bbox", help="x1,y1,x2,y2[,EPSG:n] (default CRS: the index's)")
    p.add_argument("--out", type=Path, help="results GeoPackage")
    p.add_argument("--json", action="store_true", help="print candidates as JSON to stdout")
    p.add_argument("--heatmap", type=Path, help="also write the (first) query's heat map GeoTIFF")
    g = p.add_argument_group("re-ranking and refinement (on by default; see core/refine.py)")
    g.add_argument("--no-rerank", action="store_true", help="retrieval order only")
    g.add_argument("--no-refine", action="store_true", help="re-rank, but keep chip locations")
    g.add_argument("--rerank-top", type=int, default=10, help="candidates to match (10)")
    g = p.add_argument_group("priors from the photo's EXIF/XMP (on by default; see core/priors.py)")
    g.add_argument("--no-priors", action="store_true", help="ignore the photo's metadata")
    g.add_argument("--no-gps", action="store_true", help="do not limit the search by GPS")
    g.add_argument("--gps-radius", type=float, help="GPS uncertainty in metres (EXIF, else 15)")
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
