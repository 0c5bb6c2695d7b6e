"""The distributed index build: the same index as `core.index.build_index`, built on Ray Data.

    plan     the engine's grid planned block by block (core.blockplan: the grid CRS chosen
             once, the blocks that meet the region, estimated chips each; no chip is
             enumerated) -> <out>.partial/blocks.parquet
    encode   blocks not yet written -> read actors (each plans its block's chips: exactly the
             local build's chips there) -> encode actors -> embeddings/<block>.parquet
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

from geobridge_qgis.core import blockplan, chipid, search, tiling
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
    plan = blockplan.plan_blocks(
        ds,
        region,
        tuple(request.chip_sizes),
        request.overlap,
        block_m,
        source=str(request.raster),
    )
    flip = bool(request.flip and bundle.towers[tower].input.get("flip_tta"))

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
            # The plan's signature (region, lattice, blocks): the grid's own needs every id.
            "grid": plan.signature(),
            "shard_chips": engine_index.SHARD_CHIPS,
            "flip_tta": flip,
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
            else blocks.write_manifest(manifest_path, plan)
        )
        done = blocks.done_blocks(work)
        names = manifest.column("block").to_pylist()
        chips = manifest.column("chips").to_numpy()
        todo_mask = np.array([n not in done for n in names], bool)
        todo = manifest.filter(todo_mask)
        encoders_n = int(cluster.gpus) or 1
        rate = engine_index.measure_rate(local, tower, flip=flip) * encoders_n
        est = _estimate(int(chips.sum()), bundle, rate)
        log(
            f"plan: {len(names):,} blocks of {block_m:g} m ({int(todo_mask.sum()):,} to encode), "
            f"estimated {est.line()} on {cluster.words()}, "
            f"{encoders_n} encoder(s), {precision}"
        )
        px = bundle.towers[tower].input["size"][0]
        read_kwargs = dict(
            raster=str(request.raster),
            crs_wkt=plan.crs.to_wkt(),
            bounds=plan.bounds(),
            chip_sizes=plan.chip_sizes,
            overlap=plan.overlap,
            px=px,
            area_wkb=plan.area_wkb,
            block_m=plan.block_m,
        )
        encode_kwargs = dict(
            bundle=str(Path(request.bundle).resolve()),
            work=str(work),
            tower=tower,
            precision=precision,
            providers=service.defaults.provider_names(request.providers),
            batch_size=request.batch_size,
            px=px,
            flip=flip,
        )
        # Progress in chips: each block counts its estimate until it is written, then the
        # chips it planned, so the total becomes exact as blocks finish.
        total = int(chips.sum())
        finished = int(chips[~todo_mask].sum())
        t_enc = time.perf_counter()
        encoded = 0
        if len(todo):
            stream = ray_adapter.run_blocks(cluster, todo, read_kwargs, encode_kwargs)
            position = {name: i for i, name in enumerate(names)}
            for row in stream:
                planned = int(row["planned"])
                total += planned - int(chips[position[str(row["block"])]])
                finished += planned
                encoded += planned
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
            plan,
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


def _estimate(chips: int, bundle: Any, rate: float) -> engine_index.Estimate:
    """The local build's estimate for `chips` (estimated) chips; above IVF_MIN, on disk: the
    fp16 block files while building and the SQ8 index."""
    dim = bundle.embed_dim
    if chips <= IVF_MIN:  # as engine_index.estimate: fp32 vectors (and HNSW links above FLAT_MAX)
        per_chip = 4 * dim + 8 + (256 if chips > search.FLAT_MAX else 0)
    else:
        per_chip = 2 * dim + dim + 8
    per_chip += engine_index.BYTES_PER_CHIP_META
    return engine_index.Estimate(chips, chips / rate, chips * per_chip, rate)


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
                f"{work}: a half-written index from another build (other model, raster, grid, "
                "flip setting or engine); delete it or choose another --out"
            )
        return
    (work / blocks.EMBEDDINGS).mkdir(parents=True)
    engine_index._write_json(work / "build.json", build)


def _serial(fn: Callable, items: list[tuple]) -> list:
    return [fn(*item) for item in items]


def publish(
    work: Path,
    out: Path,
    plan: blockplan.BlockPlan,
    bundle: Any,
    build: dict,
    raster: str | Path,
    region: tiling.Region | None,
    tower: str,
    factory: str | None = None,
    map_blocks: Callable[[Callable, list[tuple]], list] = _serial,
) -> Path:
    """Turn the block files into the index folder (complete or absent). `map_blocks(fn,
    items)` runs fn(*item) for every block (a loop here, Ray tasks in a build).

    The index's grid signature is the local build's (count and checksum of the chips
    planned), summed from the block files: no step holds every planned id."""
    dim = bundle.embed_dim
    planned, checksum = blocks.read_planned(work)
    if planned == 0:
        raise UserError(f"{raster}: the region holds no whole chip of {plan.chip_sizes} m")
    # Up to IVF_MIN chips planned, the grid fits in memory: the local build's own publish.
    big = factory.startswith("IVF") if factory else planned > IVF_MIN
    if not big:
        grid = plan.grid()
        build = {**build, "grid": grid.signature()}
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
    grid_signature = {**build["grid"], "count": planned, "ids_checksum": checksum}
    build = {**build, "grid": grid_signature}
    ids = blocks.read_ids(work)
    return _publish_ivf(work, out, plan, bundle, build, region, tower, ids, factory, map_blocks)


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


def _publish_ivf(work, out, plan, bundle, build, region, tower, ids, factory, map_blocks) -> Path:
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
    sizes, cx, cy = chipid.centres(ids, plan.chip_sizes, plan.overlap)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(plan.crs, 4326, always_xy=True).transform(cx, cy)
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
        "flip_tta": build["flip_tta"],
        "nprobe": int(faiss.extract_index_ivf(index).nprobe),
        "ivfdata": ivf.IVFDATA,
        "chip_ids": chipid.SCHEME,
        "count": int(index.ntotal),
        "skipped": int(build["grid"]["count"] - len(ids)),
        "raster": build["raster"],
        "grid": {
            **build["grid"],
            "crs_wkt": plan.crs.to_wkt(),
            "region_wkt": plan.region_wkt,
            "region": (region.label if region else "whole raster"),
            "lonlat_bounds": list(plan.lonlat_bounds),
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
