"""The unit of distributed work: a block, a square of the grid CRS (2 km by default), and the
per-block embedding files. No Ray here.

    blocks.parquet            the manifest: one row per block (block name, chip ids as int64
                              bytes; a chip's place and size follow from its id, core.chipid)
    embeddings/<block>.parquet one row per chip read (not nodata or blank): `id` int64,
                              `embedding` fixed-size list of float16

A block file appears atomically (written to .tmp, renamed), so a run killed at any moment
leaves only whole blocks, and the next run skips them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geobridge_qgis.core import tiling

MANIFEST = "blocks.parquet"
EMBEDDINGS = "embeddings"


def block_names(grid: tiling.Grid, block_m: float) -> np.ndarray:
    bx = np.floor(grid.cx / block_m).astype(np.int64)
    by = np.floor(grid.cy / block_m).astype(np.int64)
    return np.char.add(np.char.add(bx.astype(str), "_"), by.astype(str))


def write_manifest(path: Path, grid: tiling.Grid, block_m: float) -> pa.Table:
    """Group the grid's chips into blocks (in id order inside each) and write the manifest."""
    names = block_names(grid, block_m)
    order = np.lexsort((grid.ids, names))
    names, ids = names[order], grid.ids[order]
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    stops = np.r_[starts[1:], len(names)]
    table = pa.table(
        {
            "block": pa.array([str(names[a]) for a in starts], pa.string()),
            "chips": pa.array([int(b - a) for a, b in zip(starts, stops, strict=True)], pa.int64()),
            "ids": pa.array(
                [ids[a:b].astype("<i8").tobytes() for a, b in zip(starts, stops, strict=True)],
                pa.binary(),
            ),
        }
    )
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table


def read_manifest(path: Path) -> pa.Table:
    return pq.read_table(path)


def ids_of(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, "<i8").astype(np.int64)


def done_blocks(folder: Path) -> set[str]:
    return {p.stem for p in (folder / EMBEDDINGS).glob("*.parquet")}


def write_block(folder: Path, block: str, ids: np.ndarray, emb: np.ndarray) -> Path:
    """One block's embeddings as Parquet (fp16), atomically."""
    dim = emb.shape[1] if emb.ndim == 2 else 0
    flat = pa.array(np.ascontiguousarray(emb, np.float16).reshape(-1), pa.float16())
    table = pa.table(
        {
            "id": pa.array(ids.astype(np.int64), pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    out = folder / EMBEDDINGS / f"{block}.parquet"
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
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


def read_all(folder: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids, embs = [], []
    for p in sorted((folder / EMBEDDINGS).glob("*.parquet")):
        i, e = read_block(p, dim)
        ids.append(i)
        embs.append(e)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float16)
    return np.concatenate(ids), np.concatenate(embs)
