"""Planning a country block by block (core.blockplan): time and memory.

A raster of 1.7e6 x 1.7e6 pixels at 0.5 m in UTM 32N that holds no pixels (planning reads
none), two regions: an 800 x 800 km box and a country-like outline of --vertices vertices
(about 455,000 km2, a ragged boundary). Reported per region: blocks, estimated chips, the
plan's wall time, the peak of Python's allocations (tracemalloc) and the growth of the
process's peak RSS, and the mean time to plan one block's chips (random blocks).

    python tools/bench_plan.py [--block-m 2000] [--vertices 100000] [--sample 200]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from osgeo import gdal, osr  # noqa: E402

from geobridge_qgis.core import blockplan, tiling  # noqa: E402


def _raster() -> gdal.Dataset:
    ds = gdal.GetDriverByName("VRT").Create("", 1_700_000, 1_700_000, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((250_000.0, 0.5, 0, 6_100_000.0, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    ds.SetProjection(srs.ExportToWkt())
    return ds


def _outline(n: int) -> tiling.Region:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rng = np.random.default_rng(0)
    wobble = 0.08 * np.sin(7 * t) + 0.03 * np.sin(53 * t) + 0.004 * rng.standard_normal(n)
    r = 380_000 * (1 + wobble)
    x, y = 680_000 + r * np.cos(t), 5_650_000 + r * np.sin(t)
    pts = ",".join(f"{a:.2f} {b:.2f}" for a, b in zip(np.r_[x, x[0]], np.r_[y, y[0]], strict=True))
    return tiling.Region.from_wkt(f"POLYGON(({pts}))", "EPSG:32632")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--block-m", type=float, default=2000.0)
    p.add_argument("--vertices", type=int, default=100_000)
    p.add_argument("--sample", type=int, default=200, help="blocks whose chips are planned")
    args = p.parse_args(argv)
    ds = _raster()
    regions = (
        ("800 x 800 km box", tiling.Region.from_bbox("280010,5250010,1080010,6050010")),
        (f"country-like outline, {args.vertices:,} vertices", _outline(args.vertices)),
    )
    for label, region in regions:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t = time.perf_counter()
        plan = blockplan.plan_blocks(ds, region, block_m=args.block_m)
        seconds = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"{label}: {len(plan):,} blocks ({int(plan.inside.sum()):,} wholly inside), "
            f"{plan.estimated_chips:,} chips estimated, {plan.area_m2 / 1e6:,.0f} km2: "
            f"planned in {seconds:.2f} s, Python peak {peak / 2**20:.1f} MiB, "
            f"peak RSS +{(rss1 - rss0) / 1024:.0f} MiB"
        )
        rng = np.random.default_rng(1)
        pick = rng.choice(len(plan), min(args.sample, len(plan)), replace=False)
        edge = np.flatnonzero(~plan.inside)[: args.sample]
        for what, rows in (("random", pick), ("boundary", edge)):
            t = time.perf_counter()
            n = sum(len(plan.chips(int(i))) for i in rows)
            ms = (time.perf_counter() - t) / max(len(rows), 1) * 1000
            print(f"    {len(rows)} {what} blocks' chips: {n:,} chips, {ms:.1f} ms per block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
