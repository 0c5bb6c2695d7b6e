"""The reference index: embeddings of every chip of a raster's grid, searchable with FAISS.

An index is a folder:

    index.json    what made it: model id and tower, the raster's identity, the grid, the FAISS
                  factory string, counts; an index is only used with the model that made it
    vectors.faiss FAISS inner-product index over the L2-normalised embeddings (= cosine), ids =
                  chip ids; exact "IDMap2,Flat" up to FLAT_MAX vectors, "IVF<lists>,SQ8" above
                  (built from faiss's classes, see core/search.py; opened memory-mapped)
    chips.npz     chip id, size, centre (grid CRS and lon/lat), for fast lookups
    chips.gpkg    the same chips as footprint polygons (layer "chips"), for QGIS to show

A build streams chips in fixed batches (memory does not grow with the region) and saves each
batch's embeddings as a shard in `<out>.partial/`. A reader thread reads the next shards' chips
(GDAL windows, warped where needed) while the encoder embeds the current one (core.readahead).
A cancelled or killed build started again with the same arguments resumes after the last saved
shard; the finished index is written inside the partial folder and renamed into place, so an
index folder on disk is complete or absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from osgeo import ogr, osr
from pyproj import CRS

from . import defaults, tiling
from .bundle import Bundle
from .encoders import Encoders
from .errors import Cancelled, UserError
from .gdal_mode import gdal_exceptions
from .readahead import ReadAhead
from .search import FLAT, FLAT_MAX, VectorSearch, factory_for, write_vectors

FORMAT = "geobridge-index"
FORMAT_VERSION = 1
SHARD_CHIPS = 256
READ_AHEAD = 2  # shards read ahead of the encoder: enough to hide a slow read, memory stays flat
BYTES_PER_CHIP_META = 220  # npz + gpkg row, measured on the demo index


@dataclass
class Estimate:
    chips: int
    seconds: float
    disk_bytes: int
    chips_per_second: float

    def line(self) -> str:
        return (
            f"{self.chips:,} chips, about {_duration(self.seconds)} at "
            f"{self.chips_per_second:.0f} chips/s, about {self.disk_bytes / 1e6:.1f} MB on disk"
        )


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def measure_rate(encoders: Encoders, tower: str, n: int = 16, flip: bool = True) -> float:
    """Chips per second for this bundle on this machine (with flip augmentation unless off)."""
    size = encoders.bundle.towers[tower].input["size"]
    x = np.zeros((n, 3, *size), np.float32)
    # warm-up: session creation, first-run allocations
    encoders.encode_pixels(tower, x[:2], flip=flip)
    t0 = time.perf_counter()
    encoders.encode_pixels(tower, x, flip=flip)
    return n / max(time.perf_counter() - t0, 1e-6)


def estimate(
    grid: tiling.Grid, bundle: Bundle, chips_per_second: float, flat_max: int = FLAT_MAX
) -> Estimate:
    n = len(grid)
    # Flat: float32 and an id; IVF SQ8: a byte per dimension and an id.
    per_vector = bundle.embed_dim * (4 if factory_for(n, flat_max) == FLAT else 1) + 8
    return Estimate(
        n, n / chips_per_second, n * (per_vector + BYTES_PER_CHIP_META), chips_per_second
    )


# ---------------------------------------------------------------- build


def build_index(
    encoders: Encoders,
    raster: str | Path,
    out: Path | str,
    region: tiling.Region | None = None,
    chip_sizes: tuple[float, ...] = tiling.DEFAULT_CHIP_SIZES,
    overlap: float = tiling.DEFAULT_OVERLAP,
    tower: str = "satellite",
    max_chips: int = tiling.DEFAULT_MAX_CHIPS,
    progress: Callable[[int, int, float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_estimate: Callable[[Estimate], None] | None = None,
    reader: tiling.ChipReader | None = None,
    flat_max: int = FLAT_MAX,
    flip: bool = defaults.FLIP,
) -> Path:
    """Embed every chip of `raster` in `region` and publish the index at `out`; an exact index
    up to `flat_max` chips, an approximate one above.

    `flip=False` skips the tower's flip test-time augmentation (about twice as fast); the index
    records it and queries of it skip it too, so gallery and query embeddings match."""
    out = Path(out)
    bundle = encoders.bundle
    if out.exists():
        raise UserError(f"{out}: already exists; choose another --out or delete it first")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder")
    ds = tiling.open_raster(raster)
    grid = tiling.plan_grid(ds, region, chip_sizes, overlap, source=str(raster))
    if len(grid) == 0:
        raise UserError(f"{raster}: the region holds no whole chip of {chip_sizes} m")
    if tower not in bundle.towers or bundle.towers[tower].kind != "image":
        raise UserError(f"{bundle.root}: no {tower} image tower to index with")
    flip = bool(flip and bundle.towers[tower].input.get("flip_tta"))
    build = {
        "model_id": bundle.model_id,
        "precision": encoders.precision,
        "tower": tower,
        "raster": tiling.raster_identity(raster, ds),
        "grid": grid.signature(),
        "shard_chips": SHARD_CHIPS,
        "flip_tta": flip,
    }
    work = out.with_name(out.name + ".partial")
    shards = work / "shards"
    if work.exists():
        try:
            previous = json.loads((work / "build.json").read_text())
        except (OSError, ValueError):
            previous = None
        if previous != build:
            raise UserError(
                f"{work}: a half-written index from another build (other model, raster, "
                "grid or flip setting); delete it or choose another --out"
            )
    est = estimate(grid, bundle, measure_rate(encoders, tower, flip=flip), flat_max)
    if len(grid) > max_chips:
        raise UserError(
            f"{raster}: {len(grid):,} chips is over the cap of {max_chips:,} "
            f"({est.line()}); narrow the region, use larger chip sizes or less overlap, "
            "or raise the cap"
        )
    if on_estimate:
        on_estimate(est)
    if not work.exists():
        shards.mkdir(parents=True)
        _write_json(work / "build.json", build)

    px = bundle.towers[tower].input["size"][0]
    reader = reader or tiling.ChipReader(ds, grid.crs, _grid_bounds(grid))
    n = len(grid)
    todo = [s for s in range(0, n, SHARD_CHIPS) if not _shard_path(shards, s).exists()]
    t0, done0 = time.perf_counter(), (todo[0] if todo else n)
    with ReadAhead(_read_shards(reader, grid, todo, px, raster), READ_AHEAD) as batches:
        it = iter(batches)
        for start in todo:
            if cancelled and cancelled():
                raise Cancelled(f"cancelled at {start:,} of {n:,} chips; run again to resume")
            _, images, keep = next(it)
            emb = (
                encoders.encode_images(tower, images, flip=flip)
                if images
                else np.zeros((0, bundle.embed_dim), np.float32)
            )
            _save_npz(_shard_path(shards, start), emb=emb, keep=keep)
            if progress:
                stop = min(n, start + SHARD_CHIPS)
                rate = (stop - done0) / max(time.perf_counter() - t0, 1e-6)
                progress(stop, n, rate)
    return _publish(work, out, grid, bundle, build, raster, region, tower, flat_max)


def _shard_path(shards: Path, start: int) -> Path:
    return shards / f"{start:010d}.npz"


def _read_shards(
    reader: tiling.ChipReader, grid: tiling.Grid, starts: list[int], px: int, raster: str | Path
) -> Iterator[tuple[int, list[np.ndarray], np.ndarray]]:
    """(start, chips as uint8 RGB, which of the shard's chips were kept) per shard; runs in
    the reader thread. A GDAL failure mid-read (a truncated or damaged file, a dropped
    connection) is the user's file, not a bug: one line naming the raster and the chip."""
    for start in starts:
        stop = min(len(grid), start + SHARD_CHIPS)
        images, keep = [], np.zeros(stop - start, bool)
        for i in range(start, stop):
            try:
                img = reader.read(grid.cx[i], grid.cy[i], grid.sizes[i], px)
            except RuntimeError as e:
                raise UserError(
                    f"{raster}: GDAL cannot read the chip at {grid.cx[i]:.1f}, {grid.cy[i]:.1f} "
                    f"({tiling._first_line(e)})"
                ) from None
            if img is not None:
                images.append(img)
                keep[i - start] = True
        yield start, images, keep


def _grid_bounds(grid: tiling.Grid) -> tuple[float, float, float, float]:
    m = grid.sizes.max() if len(grid) else 0
    return (
        float(grid.cx.min() - m),
        float(grid.cy.min() - m),
        float(grid.cx.max() + m),
        float(grid.cy.max() + m),
    )


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _publish(work, out, grid, bundle, build, raster, region, tower, flat_max) -> Path:
    n = len(grid)
    embs, keeps = [], []
    for start in range(0, n, SHARD_CHIPS):
        with np.load(_shard_path(work / "shards", start)) as z:
            embs.append(z["emb"])
            keeps.append(z["keep"])
    keep = np.concatenate(keeps)
    vectors = np.concatenate(embs).astype(np.float32)
    ids = grid.ids[keep]
    factory = write_vectors(work / "vectors.faiss", vectors, ids, flat_max)

    lon, lat = grid.lonlat(keep)
    np.savez(
        work / "chips.npz",
        ids=ids,
        sizes=grid.sizes[keep],
        cx=grid.cx[keep],
        cy=grid.cy[keep],
        lon=np.asarray(lon),
        lat=np.asarray(lat),
    )
    _write_chips_gpkg(work / "chips.gpkg", grid, keep)
    identity = json.dumps(build, sort_keys=True).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "index_id": hashlib.sha256(identity).hexdigest()[:16],
        "model_id": bundle.model_id,
        "model_name": bundle.name,
        "precision": build["precision"],
        "tower": tower,
        "embed_dim": bundle.embed_dim,
        "factory": factory,
        "flip_tta": build["flip_tta"],
        "count": len(ids),
        "skipped": int(n - len(ids)),
        "raster": build["raster"],
        "grid": {
            **build["grid"],
            "crs_wkt": grid.crs.to_wkt(),
            "region_wkt": grid.region_wkt,
            "region": (region.label if region else "whole raster"),
            "lonlat_bounds": list(grid.lonlat_bounds),
        },
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _write_json(work / "index.json", manifest)
    shutil.rmtree(work / "shards")
    (work / "build.json").unlink()
    work.rename(out)
    return out


@gdal_exceptions()
def _write_chips_gpkg(path: Path, grid: tiling.Grid, keep: np.ndarray) -> None:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(grid.crs.to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("chips", srs, ogr.wkbPolygon)
    for name, kind in (("chip_id", ogr.OFTInteger64), ("size_m", ogr.OFTReal),
                       ("lon", ogr.OFTReal), ("lat", ogr.OFTReal)):  # fmt: skip
        layer.CreateField(ogr.FieldDefn(name, kind))
    lon, lat = grid.lonlat(keep)
    defn = layer.GetLayerDefn()
    layer.StartTransaction()
    for j, i in enumerate(np.flatnonzero(keep)):
        f = ogr.Feature(defn)
        f.SetField("chip_id", int(grid.ids[i]))
        f.SetField("size_m", float(grid.sizes[i]))
        f.SetField("lon", float(lon[j]))
        f.SetField("lat", float(lat[j]))
        f.SetGeometry(
            tiling.polygon_geometry(tiling.chip_polygon(grid.cx[i], grid.cy[i], grid.sizes[i]))
        )
        layer.CreateFeature(f)
    layer.CommitTransaction()
    ds = None


# ---------------------------------------------------------------- open and search


@dataclass
class Index:
    root: Path
    manifest: dict
    faiss_index: faiss.Index
    ids: np.ndarray
    sizes: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    _search: VectorSearch | None = field(default=None, repr=False, compare=False)

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.manifest["grid"]["crs_wkt"])

    @property
    def index_id(self) -> str:
        return self.manifest["index_id"]

    @classmethod
    def open(cls, root: Path | str, bundle: Bundle | None = None) -> Index:
        """Open an index; with `bundle`, refuse one made by another model."""
        root = Path(root)
        path = root / "index.json"
        if not root.is_dir():
            partial = root.with_name(root.name + ".partial")
            hint = (
                f" (an unfinished build is in {partial}; run the index command again)"
                if partial.exists()
                else ""
            )
            raise UserError(f"{root}: no such index{hint}")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            raise UserError(f"{root}: not a GeoBridge index (no readable index.json)") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{root}: not a GeoBridge index of format version {FORMAT_VERSION}")
        if bundle is not None:
            if manifest["model_id"] != bundle.model_id:
                raise UserError(
                    f"{root}: built by model {manifest['model_name']} ({manifest['model_id']}), "
                    f"not by {bundle.name} ({bundle.model_id}); rebuild it with this bundle"
                )
            if manifest["precision"] not in bundle.precisions:
                raise UserError(
                    f"{root}: built with {manifest['precision']} encoders, this bundle has "
                    f"{', '.join(bundle.precisions)}; rebuild it or use the bundle that built it"
                )
        try:
            # An IVF index merged on disk (geobridge_scale) maps its lists from the ivfdata
            # file beside vectors.faiss instead of loading them.
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR if manifest.get("ivfdata") else 0
            if not flags and str(manifest.get("factory", "")).startswith("IVF"):
                # The engine's own IVF index: its lists mapped from the file, not read in.
                flags = faiss.IO_FLAG_MMAP
            index = faiss.read_index(str(root / "vectors.faiss"), flags)
            with np.load(root / "chips.npz") as z:
                arrays = {k: z[k] for k in ("ids", "sizes", "cx", "cy", "lon", "lat")}
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise UserError(f"{root}: damaged index ({tiling._first_line(e)})") from None
        if index.ntotal != len(arrays["ids"]) or index.d != manifest["embed_dim"]:
            raise UserError(f"{root}: damaged index (vectors and chips disagree)")
        return cls(root, manifest, index, **arrays)

    def row_of(self, chip_ids: np.ndarray) -> np.ndarray:
        """Rows in the chip arrays for FAISS ids."""
        order = np.argsort(self.ids)
        return order[np.searchsorted(self.ids, chip_ids, sorter=order)]

    def ids_in(self, region: tiling.Region) -> np.ndarray:
        """Chip ids whose centre lies in `region` (any CRS)."""
        geom = tiling.transform_geometry(region.geometry, region.crs or self.crs, self.crs)
        xmin, xmax, ymin, ymax = geom.GetEnvelope()
        cand = np.flatnonzero(
            (self.cx >= xmin) & (self.cx <= xmax) & (self.cy >= ymin) & (self.cy <= ymax)
        )
        inside = [
            i
            for i in cand
            if geom.Contains(ogr.CreateGeometryFromWkt(f"POINT({self.cx[i]} {self.cy[i]})"))
        ]
        return self.ids[np.asarray(inside, dtype=np.int64)]

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], chip ids [Q, k]; -1 where fewer than k exist). With `allowed_ids`,
        what an exact search over just those chips returns, whatever the index type."""
        fi = self.faiss_index
        if self._search is None or self._search.index is not fi or self._search.n != fi.ntotal:
            self._search = VectorSearch(fi)  # it reads the vectors in place: redo if they change
        return self._search.search(queries, k, allowed_ids)
