"""The distributed index build: the same index as `core.index.build_index`, built on Ray Data.

    plan     the engine's grid (tiling.plan_grid) in blocks -> <out>.partial/blocks.parquet
    encode   blocks not yet written -> read actors -> encode actors -> embeddings/<block>.parquet
    publish  up to IVF_MIN chips: the local build's own index (Flat or HNSW, chips.npz,
             chips.gpkg, index.json), so every front end opens it as before; above: IVF
             trained on a sample, filled per block, merged on disk (geobridge_scale.ivf) and
             opened memory-mapped; index.json has the same fields, plus `ivfdata`.

A killed or cancelled run started again with the same arguments skips the blocks written; a
half-written <out>.partial from other arguments is refused, as in the local build.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from geobridge_qgis.core import chipid, search, tiling
from geobridge_qgis.core import index as engine_index
from geobridge_qgis.core.errors import UserError

from . import blocks, ivf

log_ = logging.getLogger(__name__)

BLOCK_M = 2000.0  # metres: about 2,300 chips at the default sizes; a block is the unit of resume
IVF_MIN = 1_000_000  # above this many chips the index is IVF on disk, not Flat/HNSW in memory


def build_index_ray(
    request: Any,
    address: str | None = None,
    block_m: float = BLOCK_M,
    factory: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
):
    """Build (or resume) the index of `request` (a service.IndexRequest) on a Ray cluster.

    `factory` forces the FAISS index ("IVF256,SQ8"; default: by count). Returns the same
    service.IndexOutcome as the local build."""
    from pyproj import CRS

    from geobridge_qgis.core import service
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.precision import choose

    from . import ray_adapter

    log = log or (lambda _line: None)
    t0 = time.perf_counter()
    out = Path(request.out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        raise UserError(f"{out}: already exists; choose another --out or delete it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    if block_m <= 0:
        raise UserError(f"--block-m must be positive metres, got {block_m:g}")
    if factory:
        ivf.parse_factory(factory)  # a bad --factory is refused before any work
    bundle = Bundle.load(request.bundle)
    tower = request.tower
    if tower not in bundle.towers or bundle.towers[tower].kind != "image":
        raise UserError(f"{bundle.root}: no {tower} image tower to index with")
    ds = tiling.open_raster(request.raster)  # a bad raster fails here, before Ray starts
    region = request.region
    if isinstance(region, str):
        region = service.resolve_region(region, CRS.from_wkt(ds.GetProjection()))
    else:
        region = service.resolve_region(region)
    grid = tiling.plan_grid(
        ds, region, tuple(request.chip_sizes), request.overlap, source=str(request.raster)
    )
    if len(grid) == 0:
        raise UserError(f"{request.raster}: the region holds no whole chip of {grid.chip_sizes} m")

    cluster = ray_adapter.connect(address, num_cpus, object_store_memory)
    try:
        local = service.encoders_for(
            bundle, request.providers, request.batch_size, request.precision
        )
        if cluster.gpus and request.precision in (None, "", "auto"):
            # Workers run on their GPUs: the precision a GPU gets in the local path.
            precision = choose(bundle, ["CUDAExecutionProvider"], "auto")
        else:
            precision = local.precision
        build = {
            "model_id": bundle.model_id,
            "precision": precision,
            "tower": tower,
            "raster": tiling.raster_identity(request.raster, ds),
            "grid": grid.signature(),
            "shard_chips": engine_index.SHARD_CHIPS,
            # The encode actors embed as the tower's manifest says (--no-flip is local only).
            "flip_tta": bool(bundle.towers[tower].input.get("flip_tta")),
            "engine": "ray",
            "block_m": block_m,
            "factory": factory,
        }
        work = out.with_name(out.name + ".partial")
        _start_work(work, build)
        manifest_path = work / blocks.MANIFEST
        manifest = (
            blocks.read_manifest(manifest_path)
            if manifest_path.exists()
            else blocks.write_manifest(manifest_path, grid, block_m)
        )
        done = blocks.done_blocks(work)
        names = manifest.column("block").to_pylist()
        chips = manifest.column("chips").to_numpy()
        todo_mask = np.array([n not in done for n in names], bool)
        todo = manifest.filter(todo_mask)
        encoders_n = int(cluster.gpus) or 1
        rate = engine_index.measure_rate(local, tower) * encoders_n
        est = engine_index.estimate(grid, bundle, rate)
        log(
            f"plan: {len(names):,} blocks of {block_m:g} m ({int(todo_mask.sum()):,} to encode), "
            f"{est.line()} on {cluster.words()}, {encoders_n} encoder(s), {precision}"
        )
        px = bundle.towers[tower].input["size"][0]
        bounds = engine_index._grid_bounds(grid)
        read_kwargs = dict(
            raster=str(request.raster),
            crs_wkt=grid.crs.to_wkt(),
            bounds=bounds,
            chip_sizes=grid.chip_sizes,
            overlap=grid.overlap,
            px=px,
        )
        encode_kwargs = dict(
            bundle=str(Path(request.bundle).resolve()),
            work=str(work),
            tower=tower,
            precision=precision,
            providers=service.defaults.provider_names(request.providers),
            batch_size=request.batch_size,
            px=px,
        )
        total = int(chips.sum())
        finished = int(chips[~todo_mask].sum())
        t_enc = time.perf_counter()
        encoded = 0
        if len(todo):
            stream = ray_adapter.run_blocks(cluster, todo, read_kwargs, encode_kwargs)
            for row in stream:
                manifest_chips = int(chips[names.index(row["block"])])
                finished += manifest_chips
                encoded += manifest_chips
                if progress:
                    progress(finished, total, encoded / max(time.perf_counter() - t_enc, 1e-6))
                if cancelled and cancelled():
                    stream.close()
                    raise engine_index.Cancelled(
                        f"cancelled with {len(blocks.done_blocks(work)):,} of {len(names):,} "
                        "blocks written; run again to resume"
                    )
        missing = set(names) - blocks.done_blocks(work)
        if missing:
            raise RuntimeError(f"{len(missing)} blocks were not written: {sorted(missing)[:3]}")
        device = _device(cluster)
        # The IVF path fills its per-block lists as tasks on the cluster.
        folder = publish(
            work,
            out,
            grid,
            bundle,
            build,
            request.raster,
            region,
            tower,
            factory,
            map_blocks=lambda fn, items: ray_adapter.map_tasks(fn, items),
        )
    finally:
        ray_adapter.shutdown(cluster)
    manifest_json = json.loads((folder / "index.json").read_text())
    return service.IndexOutcome(
        folder,
        int(manifest_json["count"]),
        int(manifest_json.get("skipped", 0)),
        device,
        time.perf_counter() - t0,
    )


def _device(cluster) -> str:
    return f"{cluster.words()}" + (" (GPU encoders)" if cluster.gpus else " (CPU encoders)")


def _start_work(work: Path, build: dict) -> None:
    if work.exists():
        try:
            previous = json.loads((work / "build.json").read_text())
        except (OSError, ValueError):
            previous = None
        if previous != build:
            raise UserError(
                f"{work}: a half-written index from another build (other model, raster, grid "
                "or engine); delete it or choose another --out"
            )
        return
    (work / blocks.EMBEDDINGS).mkdir(parents=True)
    engine_index._write_json(work / "build.json", build)


def _serial(fn: Callable, items: list[tuple]) -> list:
    return [fn(*item) for item in items]


def publish(
    work: Path,
    out: Path,
    grid: tiling.Grid,
    bundle: Any,
    build: dict,
    raster: str | Path,
    region: tiling.Region | None,
    tower: str,
    factory: str | None = None,
    map_blocks: Callable[[Callable, list[tuple]], list] = _serial,
) -> Path:
    """Turn the block files into the index folder (complete or absent). `map_blocks(fn,
    items)` runs fn(*item) for every block (a loop here, Ray tasks in a build)."""
    dim = bundle.embed_dim
    ids = blocks.read_ids(work)
    big = factory.startswith("IVF") if factory else len(ids) > IVF_MIN
    if not big:
        ids, emb = blocks.read_all(work, dim)
        # The local build's shards in grid order: the same publish writes the same files.
        order = np.argsort(grid.ids)
        pos = order[np.searchsorted(grid.ids, ids, sorter=order)]
        keep = np.zeros(len(grid), bool)
        keep[pos] = True
        vectors = np.zeros((len(grid), dim), np.float32)
        vectors[pos] = emb.astype(np.float32)
        shards = work / "shards"
        shards.mkdir(exist_ok=True)
        for start in range(0, len(grid), engine_index.SHARD_CHIPS):
            stop = min(len(grid), start + engine_index.SHARD_CHIPS)
            k = keep[start:stop]
            engine_index._save_npz(shards / f"{start:010d}.npz", emb=vectors[start:stop][k], keep=k)
        _drop_block_files(work)
        return engine_index._publish(
            work, out, grid, bundle, build, raster, region, tower, search.FLAT_MAX
        )
    return _publish_ivf(work, out, grid, bundle, build, region, tower, ids, factory, map_blocks)


def _drop_block_files(work: Path) -> None:
    for p in (work / blocks.EMBEDDINGS).glob("*"):
        p.unlink()
    (work / blocks.EMBEDDINGS).rmdir()
    (work / blocks.MANIFEST).unlink(missing_ok=True)


def _sample(work: Path, dim: int, rows: int, max_blocks: int = 2000) -> np.ndarray:
    """Training vectors from a random subset of the blocks (never all embeddings at once)."""
    rng = np.random.default_rng(0)
    files = sorted((work / blocks.EMBEDDINGS).glob("*.parquet"))
    chosen = rng.permutation(len(files))[:max_blocks]
    per_block = max(1, -(-rows // max(len(chosen), 1)))
    parts = []
    for i in sorted(chosen):
        _, emb = blocks.read_block(files[i], dim)
        take = rng.choice(len(emb), min(len(emb), per_block), replace=False)
        parts.append(emb[take].astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def fill_from_block(trained: str, block_file: str, dim: int, target: str) -> int:
    """One block's IVF lists from its Parquet file (a task: reads, adds, writes, returns)."""
    if Path(target).exists():
        return -1  # filled before a kill
    ids, emb = blocks.read_block(Path(block_file), dim)
    return ivf.fill_block(trained, ids, emb.astype(np.float32), Path(target))


def _publish_ivf(work, out, grid, bundle, build, region, tower, ids, factory, map_blocks) -> Path:
    import datetime as dt
    import hashlib

    factory = factory or ivf.factory_for(len(ids), bundle.embed_dim)
    if not (work / "trained.faiss").exists():  # a publish killed after training keeps it
        # k-means wants about TRAIN_PER_LIST vectors per list: 2.6e6 for 65,536 lists.
        nlist, _ = ivf.parse_factory(factory)
        sample = _sample(work, bundle.embed_dim, rows=ivf.TRAIN_PER_LIST * nlist)
        faiss.write_index(ivf.train_ivf(sample, factory), str(work / "trained.faiss"))
    parts = work / "ivf_blocks"
    parts.mkdir(exist_ok=True)
    sources = sorted((work / blocks.EMBEDDINGS).glob("*.parquet"))
    files = [parts / f"{p.stem}.faiss" for p in sources]
    items = [
        (str(work / "trained.faiss"), str(p), bundle.embed_dim, str(f))
        for p, f in zip(sources, files, strict=True)
    ]
    map_blocks(fill_from_block, items)
    index = ivf.merge(work / "trained.faiss", files, work)
    sizes, cx, cy = chipid.centres(ids, grid.chip_sizes, grid.overlap)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(grid.crs, 4326, always_xy=True).transform(cx, cy)
    np.savez(
        work / "chips.npz",
        ids=ids,
        sizes=sizes,
        cx=cx,
        cy=cy,
        lon=np.asarray(lon),
        lat=np.asarray(lat),
    )
    identity = json.dumps(build, sort_keys=True).encode()
    manifest = {
        "format": engine_index.FORMAT,
        "format_version": engine_index.FORMAT_VERSION,
        "index_id": hashlib.sha256(identity).hexdigest()[:16],
        "model_id": bundle.model_id,
        "model_name": bundle.name,
        "precision": build["precision"],
        "tower": tower,
        "embed_dim": bundle.embed_dim,
        "factory": factory,
        "nprobe": int(faiss.extract_index_ivf(index).nprobe),
        "ivfdata": ivf.IVFDATA,
        "chip_ids": chipid.SCHEME,
        "count": int(index.ntotal),
        "skipped": int(len(grid) - len(ids)),
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
    engine_index._write_json(work / "index.json", manifest)
    del index
    for p in parts.glob("*"):
        p.unlink()
    parts.rmdir()
    (work / "trained.faiss").unlink()
    _drop_block_files(work)
    (work / "build.json").unlink()
    work.rename(out)
    return out
