"""The two stages of the distributed build as plain callables (Ray Data runs them as actors;
nothing here imports Ray, so they are tested and reused without it).

ReadBlock:   a manifest row -> the block's chips as uint8 pixels (bytes), cut from the raster
             with the engine's ChipReader. Pixels stay uint8 until the encoder: the float
             tensor is 4 times larger and would spill Ray's object store.
EncodeBlock: one block's pixels -> embeddings (the engine's Encoders: one onnxruntime session
             per actor, GPU when the node has one) -> embeddings/<block>.parquet, and a small
             row back to the driver for progress.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyproj import CRS

from geobridge_qgis.core import chipid, tiling

from . import blocks


class ReadBlock:
    def __init__(
        self,
        raster: str,
        crs_wkt: str,
        bounds: tuple[float, float, float, float],
        chip_sizes: tuple[float, ...],
        overlap: float,
        px: int,
    ):
        self.ds = tiling.open_raster(raster)
        self.reader = tiling.ChipReader(self.ds, CRS.from_wkt(crs_wkt), tuple(bounds))
        self.chip_sizes, self.overlap, self.px = tuple(chip_sizes), overlap, px

    def read(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the chips read, uint8 [n, px, px, 3]); nodata and blank chips are left out."""
        sizes, cx, cy = chipid.centres(ids, self.chip_sizes, self.overlap)
        kept, images = [], []
        for i in range(len(ids)):
            img = self.reader.read(cx[i], cy[i], sizes[i], self.px)
            if img is not None:
                kept.append(ids[i])
                images.append(img)
        pixels = np.stack(images) if images else np.zeros((0, self.px, self.px, 3), np.uint8)
        return np.asarray(kept, np.int64), pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, ids_out, pixels_out, counts = [], [], [], []
        for name, raw in zip(batch["block"], batch["ids"], strict=True):
            ids, pixels = self.read(blocks.ids_of(raw))
            names.append(str(name))
            ids_out.append(ids.astype("<i8").tobytes())
            pixels_out.append(pixels.tobytes())
            counts.append(len(ids))
        return {
            "block": np.asarray(names, dtype=object),
            "ids": np.asarray(ids_out, dtype=object),
            "pixels": np.asarray(pixels_out, dtype=object),
            "chips": np.asarray(counts, np.int64),
        }


class EncodeBlock:
    def __init__(
        self,
        bundle: str,
        work: str,
        tower: str,
        precision: str,
        providers: list[str] | None,
        batch_size: int,
        px: int,
    ):
        from geobridge_qgis.core.bundle import Bundle
        from geobridge_qgis.core.encoders import Encoders

        self.encoders = Encoders(
            Bundle.load(bundle), providers, batch_size=batch_size, precision=precision
        )
        self.work, self.tower, self.px = Path(work), tower, px
        self.dim = self.encoders.bundle.embed_dim

    def encode(self, block: str, ids: np.ndarray, pixels: np.ndarray) -> Path:
        emb = (
            self.encoders.encode_images(self.tower, list(pixels))
            if len(ids)
            else np.zeros((0, self.dim), np.float32)
        )
        return blocks.write_block(self.work, block, ids, emb)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, raw_ids, raw_px in zip(
            batch["block"], batch["ids"], batch["pixels"], strict=True
        ):
            ids = blocks.ids_of(raw_ids)
            pixels = np.frombuffer(raw_px, np.uint8).reshape(len(ids), self.px, self.px, 3)
            self.encode(str(name), ids, pixels)
        return {
            "block": np.asarray(batch["block"], dtype=object),
            "chips": np.asarray(batch["chips"], np.int64),
            "device": np.asarray([self.encoders.device] * len(batch["block"]), dtype=object),
        }
