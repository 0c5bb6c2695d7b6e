"""The index build's read-ahead pipeline and the --no-flip build.

The chips are read in a thread ahead of the encoder; the index it builds must be the one a
plain read-then-encode loop builds, cancel and resume must still give that index, and an error
in the reader must reach the caller as the one-line UserError it is.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import run_cli, textured, write_geotiff
from osgeo import gdal

from geobridge_qgis.core import index as engine_index
from geobridge_qgis.core import service, tiling
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.encoders import Encoders
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.index import Cancelled, Index, build_index
from geobridge_qgis.core.locate import QueryOptions
from geobridge_qgis.core.priors import NO_PRIORS
from geobridge_qgis.core.readahead import ReadAhead

SIZES = (40.0, 60.0)  # ~700 chips over the 600 m raster: three shards


def vectors(index: Index) -> dict[int, np.ndarray]:
    return {int(i): index.faiss_index.reconstruct(int(i)) for i in index.ids}


def serial_embeddings(bundle_dir, raster, flip=True) -> dict[int, np.ndarray]:
    """What the build did before it read ahead: read every chip, then encode, in one thread."""
    enc = Encoders(Bundle.load(bundle_dir))
    ds = tiling.open_raster(raster)
    grid = tiling.plan_grid(ds, None, SIZES, 0.5)
    reader = tiling.ChipReader(ds, grid.crs, (0, 0, 1e9, 1e9))
    ids, images = [], []
    for i in range(len(grid)):
        img = reader.read(grid.cx[i], grid.cy[i], grid.sizes[i], 32)
        if img is not None:
            ids.append(int(grid.ids[i]))
            images.append(img)
    emb = enc.encode_images("satellite", images, flip=flip)
    return dict(zip(ids, emb, strict=True))


class SpyReader:
    """A real ChipReader that records which thread reads and how far ahead of the saved
    shards it is."""

    def __init__(self, raster, shards_dir, fail_at: int | None = None):
        ds = tiling.open_raster(raster)
        self.inner = tiling.ChipReader(ds, tiling.plan_grid(ds, None, SIZES, 0.5).crs,
                                       (0, 0, 1e9, 1e9))  # fmt: skip
        self.shards_dir, self.fail_at = shards_dir, fail_at
        self.threads: set[str] = set()
        self.calls = 0
        self.max_ahead = 0

    def read(self, cx, cy, size, px):
        shard = self.calls // engine_index.SHARD_CHIPS
        saved = len(list(self.shards_dir.glob("*.npz"))) if self.shards_dir.exists() else 0
        self.max_ahead = max(self.max_ahead, shard - saved)
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise UserError("satellite.tif: the network source went away")
        return self.inner.read(cx, cy, size, px)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "geobridge-reader"]


def test_read_ahead_builds_the_same_index(tiny_bundle, utm_raster, tmp_path):
    spy = SpyReader(utm_raster, tmp_path / "i.partial" / "shards")
    out = build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tmp_path / "i",
                      chip_sizes=SIZES, reader=spy)  # fmt: skip
    index = Index.open(out)
    assert len(index.ids) > 2 * engine_index.SHARD_CHIPS  # several shards went through the queue
    got, want = vectors(index), serial_embeddings(tiny_bundle, utm_raster)
    assert sorted(got) == sorted(want)
    assert max(np.abs(got[k] - want[k]).max() for k in want) < 1e-6
    # Read in the reader thread, never more than the queue's depth (plus the shard being
    # encoded and the one being read) ahead of what is saved: memory stays flat.
    assert spy.threads == {"geobridge-reader"}
    assert 1 <= spy.max_ahead <= engine_index.READ_AHEAD + 1
    assert index.manifest["flip_tta"] is True
    assert not reader_threads()


def test_cancel_mid_build_then_resume(tiny_bundle, utm_raster, tmp_path):
    enc = Encoders(Bundle.load(tiny_bundle))
    polls = []

    def cancelled():
        polls.append(1)
        return len(polls) > 2  # after two shards

    with pytest.raises(Cancelled, match="run again to resume"):
        build_index(enc, utm_raster, tmp_path / "i", chip_sizes=SIZES, cancelled=cancelled)
    assert not reader_threads()  # the reader stopped with the build
    shards = tmp_path / "i.partial" / "shards"
    assert len(list(shards.glob("*.npz"))) == 2 and not (tmp_path / "i").exists()

    spy = SpyReader(utm_raster, shards)
    out = build_index(enc, utm_raster, tmp_path / "i", chip_sizes=SIZES, reader=spy)
    index = Index.open(out)
    # Only the chips after the two saved shards were read again.
    assert spy.calls == len(index.ids) + index.manifest["skipped"] - 2 * engine_index.SHARD_CHIPS
    got, want = vectors(index), serial_embeddings(tiny_bundle, utm_raster)
    assert sorted(got) == sorted(want)
    assert max(np.abs(got[k] - want[k]).max() for k in want) < 1e-6
    assert not (tmp_path / "i.partial").exists()


def test_reader_error_reaches_the_caller(tiny_bundle, utm_raster, tmp_path):
    spy = SpyReader(utm_raster, tmp_path / "i.partial" / "shards", fail_at=300)
    with pytest.raises(UserError) as e:
        build_index(Encoders(Bundle.load(tiny_bundle)), utm_raster, tmp_path / "i",
                    chip_sizes=SIZES, reader=spy)  # fmt: skip
    assert str(e.value) == "satellite.tif: the network source went away"
    assert not reader_threads()
    # The first shard, read before the failure, was kept for a resume.
    assert len(list((tmp_path / "i.partial" / "shards").glob("*.npz"))) == 1


def damaged_geotiff(path):
    """A deflate-compressed GeoTIFF whose later tiles hold garbage: it opens, then fails to
    read part-way through a build."""
    write_geotiff(path.with_suffix(".src.tif"), textured(1200, 1200, seed=5))
    gdal.Translate(str(path), str(path.with_suffix(".src.tif")),
                   creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])  # fmt: skip
    ds = gdal.Open(str(path))  # the band needs its dataset alive
    band = ds.GetRasterBand(1)
    offsets = [int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF"))
               for y in range(3, 5) for x in range(5)]  # fmt: skip
    band = ds = None
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            f.write(b"\xff" * 64)
    return path


def test_damaged_raster_is_one_line_on_the_command_line(tiny_bundle, tmp_path):
    raster = damaged_geotiff(tmp_path / "damaged.tif")
    r = run_cli("geobridge_qgis", "index", "--bundle", tiny_bundle, "--raster", raster,
                "--chip-sizes", "40,60", "--out", tmp_path / "i")  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"error: {raster}: GDAL cannot read the chip at "), r.stderr


def test_producer_error_and_early_close():
    def items():
        yield 1
        yield 2
        raise ValueError("boom")

    with ReadAhead(items()) as ahead, pytest.raises(ValueError, match="boom"):
        assert list(ahead) == [1, 2]
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield len(produced)

    with ReadAhead(endless(), depth=2) as ahead:
        assert next(iter(ahead)) == 1
    # Closed after one item: the producer stopped at the queue's bound, not far beyond.
    assert len(produced) <= 4 and not reader_threads()


def test_no_flip_is_recorded_and_honoured(tiny_bundle, utm_raster, tmp_path):
    r = run_cli("geobridge_qgis", "index", "--bundle", tiny_bundle, "--raster", utm_raster,
                "--chip-sizes", "40,60", "--no-flip", "--out", tmp_path / "noflip")  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = Index.open(tmp_path / "noflip")
    assert json.loads((tmp_path / "noflip" / "index.json").read_text())["flip_tta"] is False
    got = vectors(index)
    plain, flipped = (serial_embeddings(tiny_bundle, utm_raster, flip) for flip in (False, True))
    assert max(np.abs(got[k] - plain[k]).max() for k in got) < 1e-6
    gap = max(np.abs(got[k] - flipped[k]).max() for k in got)
    assert gap > 1e-3  # the flip really changes the embeddings, so the check above means it

    # A query of this index skips the flip too: a chip finds itself with cosine 1.
    row = len(index.ids) // 2
    reader = tiling.ChipReader(tiling.open_raster(utm_raster), index.crs, (0, 0, 1e9, 1e9))
    chip = reader.read(index.cx[row], index.cy[row], index.sizes[row], 32)
    session = service.LocateSession(tiny_bundle, index)
    options = QueryOptions(view="satellite", rotations=(0,), rerank=False, heatmap=False,
                           priors=NO_PRIORS, top_k=10)  # fmt: skip
    found = session.query(options, image=chip, meta=None).candidates
    cosines = {i: s for c in found for i, s in zip(c.chip_ids, c.chip_scores, strict=True)}
    assert cosines[int(index.ids[row])] == pytest.approx(1.0, abs=1e-5)
    assert max(cosines, key=cosines.get) == int(index.ids[row])
    flip_score = float(plain[int(index.ids[row])] @ flipped[int(index.ids[row])])
    assert flip_score < 1 - 1e-4  # with flip the query would not have scored 1

    # Resuming a flip build of the same output is refused: the shards would mix.
    request = service.IndexRequest(tiny_bundle, str(utm_raster), tmp_path / "x",
                                   chip_sizes=SIZES, flip=False)  # fmt: skip
    with pytest.raises(Cancelled):
        service.build_index(request, cancelled=lambda: True)
    request.flip = True
    with pytest.raises(UserError, match="flip setting"):
        service.build_index(request)
