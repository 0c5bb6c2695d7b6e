"""The unit of distributed work: a block, a square of the grid CRS (2 km by default), and the
per-block embedding files. No Ray here.

    blocks.parquet            the manifest: one row per block of the plan (core.blockplan):
                              block name, bx, by, bounds in the grid CRS, estimated chips,
                              whether it lies wholly inside the region.
                              No chip ids: a read actor plans its own block's chips.
    embeddings/<block>.parquet one row per chip read (not nodata or blank): `id` int64,
                              `embedding` fixed-size list of float16; its schema metadata
                              says how many chips the block planned and their ids' checksum
                              (tiling.ids_checksum), so the whole grid's count and checksum
                              are known without its ids

A block file appears atomically (written to .tmp, renamed), so a run killed at any moment
leaves only whole blocks, and the next run skips them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geobridge_qgis.core import blockplan, tiling

MANIFEST = "blocks.parquet"
EMBEDDINGS = "embeddings"
PLANNED, CHECKSUM = "geobridge.planned", "geobridge.ids_checksum"


def block_names(grid: tiling.Grid, block_m: float) -> np.ndarray:
    bx = np.floor(grid.cx / block_m).astype(np.int64)
    by = np.floor(grid.cy / block_m).astype(np.int64)
    return np.char.add(np.char.add(bx.astype(str), "_"), by.astype(str))


def write_manifest(path: Path, plan: blockplan.BlockPlan) -> pa.Table:
    """One row per block of the plan (name, lattice position, bounds, estimated chips)."""
    bounds = plan.block_bounds()
    table = pa.table(
        {
            "block": pa.array(plan.names, pa.string()),
            "bx": pa.array(plan.bx, pa.int64()),
            "by": pa.array(plan.by, pa.int64()),
            "xmin": pa.array(bounds[:, 0], pa.float64()),
            "ymin": pa.array(bounds[:, 1], pa.float64()),
            "xmax": pa.array(bounds[:, 2], pa.float64()),
            "ymax": pa.array(bounds[:, 3], pa.float64()),
            "chips": pa.array(plan.estimated, pa.int64()),
            "inside": pa.array(plan.inside, pa.bool_()),
        }
    )
    tmp = path.with_name(path.name + ".tmp")
    # No dictionary pages: embeddings never repeat, and trying costs 3x the write time.
    pq.write_table(table, tmp, use_dictionary=["id"])
    tmp.replace(path)
    return table


def read_manifest(path: Path) -> pa.Table:
    return pq.read_table(path)


def ids_of(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, "<i8").astype(np.int64)


def done_blocks(folder: Path) -> set[str]:
    return {p.stem for p in (folder / EMBEDDINGS).glob("*.parquet")}


def write_block(
    folder: Path,
    block: str,
    ids: np.ndarray,
    emb: np.ndarray,
    planned: int | None = None,
    checksum: int | None = None,
) -> Path:
    """One block's embeddings as Parquet (fp16), atomically; `planned` chips of checksum
    `checksum` (default: the chips written) were planned in it."""
    dim = emb.shape[1] if emb.ndim == 2 else 0
    flat = pa.array(np.ascontiguousarray(emb, np.float16).reshape(-1), pa.float16())
    table = pa.table(
        {
            "id": pa.array(ids.astype(np.int64), pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    meta = {
        PLANNED: str(len(ids) if planned is None else int(planned)),
        CHECKSUM: str(tiling.ids_checksum(ids) if checksum is None else int(checksum)),
    }
    table = table.replace_schema_metadata(meta)
    out = folder / EMBEDDINGS / f"{block}.parquet"
    tmp = out.with_name(out.name + ".tmp")
    # No dictionary pages: embeddings never repeat, and trying costs 3x the write time.
    pq.write_table(table, tmp, use_dictionary=["id"])
    tmp.replace(out)
    return out


def read_block(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [N], embeddings float16 [N, dim]) of one block file."""
    table = pq.read_table(path)
    ids = table.column("id").to_numpy()
    col = table.column("embedding").combine_chunks()
    emb = col.flatten().to_numpy(zero_copy_only=False).astype(np.float16).reshape(-1, dim)
    return ids.astype(np.int64), emb


def read_ids(folder: Path) -> np.ndarray:
    """Every chip id written (the id columns only)."""
    parts = [
        pq.read_table(p, columns=["id"]).column("id").to_numpy()
        for p in sorted((folder / EMBEDDINGS).glob("*.parquet"))
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def read_planned(folder: Path) -> tuple[int, int]:
    """(chips planned, their ids' checksum) over every block written: the grid's count and
    checksum (tiling.Grid.signature) without holding its ids."""
    count, checksum = 0, 0
    for p in sorted((folder / EMBEDDINGS).glob("*.parquet")):
        meta = pq.read_schema(p).metadata or {}
        count += int(meta.get(PLANNED.encode(), 0))
        checksum ^= int(meta.get(CHECKSUM.encode(), 0))
    return count, checksum


def read_all(folder: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids, embs = [], []
    for p in sorted((folder / EMBEDDINGS).glob("*.parquet")):
        i, e = read_block(p, dim)
        ids.append(i)
        embs.append(e)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float16)
    return np.concatenate(ids), np.concatenate(embs)
