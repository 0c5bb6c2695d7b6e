"""The two stages of the distributed build as plain callables (Ray Data runs them as actors;
nothing here imports Ray, so they are tested and reused without it).

ReadBlock:   a manifest row (a block) -> the block's chips, planned here (core.blockplan: the
             same chips the whole region's grid has there), as uint8 pixels (bytes) cut from
             the raster with the engine's ChipReader. Pixels stay uint8 until the encoder:
             the float tensor is 4 times larger and would spill Ray's object store.
EncodeBlock: one block's pixels -> embeddings (the engine's Encoders: one onnxruntime session
             per actor, GPU when the node has one; flip test-time augmentation as the build
             asks) -> embeddings/<block>.parquet, and a small row back to the driver for
             progress.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyproj import CRS

from geobridge_qgis.core import blockplan, tiling

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
        area_wkb: bytes,
        block_m: float,
    ):
        self.ds = tiling.open_raster(raster)
        self.reader = tiling.ChipReader(self.ds, CRS.from_wkt(crs_wkt), tuple(bounds))
        self.chipper = blockplan.BlockChipper(area_wkb, tuple(chip_sizes), overlap, block_m)
        self.px = px

    def read(self, chips: blockplan.BlockChips) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the chips read, uint8 [n, px, px, 3]); nodata and blank chips are left out."""
        kept, images = [], []
        for i in range(len(chips)):
            img = self.reader.read(chips.cx[i], chips.cy[i], chips.sizes[i], self.px)
            if img is not None:
                kept.append(chips.ids[i])
                images.append(img)
        pixels = np.stack(images) if images else np.zeros((0, self.px, self.px, 3), np.uint8)
        return np.asarray(kept, np.int64), pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, ids_out, pixels_out, counts, planned, checksums = [], [], [], [], [], []
        rows = zip(batch["block"], batch["bx"], batch["by"], batch["inside"], strict=True)
        for name, bx, by, inside in rows:
            chips = self.chipper.chips(int(bx), int(by), bool(inside))
            ids, pixels = self.read(chips)
            names.append(str(name))
            ids_out.append(ids.astype("<i8").tobytes())
            pixels_out.append(pixels.tobytes())
            counts.append(len(ids))
            planned.append(len(chips))
            checksums.append(tiling.ids_checksum(chips.ids))
        return {
            "block": np.asarray(names, dtype=object),
            "ids": np.asarray(ids_out, dtype=object),
            "pixels": np.asarray(pixels_out, dtype=object),
            "chips": np.asarray(counts, np.int64),
            "planned": np.asarray(planned, np.int64),
            "checksum": np.asarray(checksums, np.int64),
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
        flip: bool = True,
    ):
        from geobridge_qgis.core.bundle import Bundle
        from geobridge_qgis.core.encoders import Encoders

        self.encoders = Encoders(
            Bundle.load(bundle), providers, batch_size=batch_size, precision=precision
        )
        self.work, self.tower, self.px, self.flip = Path(work), tower, px, bool(flip)
        self.dim = self.encoders.bundle.embed_dim

    def encode(
        self, block: str, ids: np.ndarray, pixels: np.ndarray, planned: int, checksum: int
    ) -> Path:
        emb = (
            self.encoders.encode_images(self.tower, list(pixels), flip=self.flip)
            if len(ids)
            else np.zeros((0, self.dim), np.float32)
        )
        return blocks.write_block(self.work, block, ids, emb, planned, checksum)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, raw_ids, raw_px, planned, checksum in zip(
            batch["block"],
            batch["ids"],
            batch["pixels"],
            batch["planned"],
            batch["checksum"],
            strict=True,
        ):
            ids = blocks.ids_of(raw_ids)
            pixels = np.frombuffer(raw_px, np.uint8).reshape(len(ids), self.px, self.px, 3)
            self.encode(str(name), ids, pixels, int(planned), int(checksum))
        return {
            "block": np.asarray(batch["block"], dtype=object),
            "chips": np.asarray(batch["chips"], np.int64),
            "planned": np.asarray(batch["planned"], np.int64),
            "device": np.asarray([self.encoders.device] * len(batch["block"]), dtype=object),
        }
