"""Resume means resume: an index's folder is named by the build's inputs, so a build cancelled
half-way and started again with the same inputs continues from its last saved shard."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from geobridge_qgis.core import tiling
from geobridge_qgis.core.index import SHARD_CHIPS, Cancelled, Index
from geobridge_qgis.core.service import IndexRequest, build_index, index_folder_for

CHIPS = (40.0, 60.0)  # ~1,200 chips of the 600 m test raster: five shards


def test_index_folder_names_the_builds_inputs(tiny_bundle, utm_raster, tmp_path):
    request = IndexRequest(tiny_bundle, str(utm_raster), "", chip_sizes=CHIPS)
    folder = index_folder_for(request, tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("utm-")
    assert index_folder_for(replace(request), tmp_path) == folder  # same inputs, same folder
    assert index_folder_for(request, tmp_path, name="my layer").name.startswith("my_layer-")
    others = [
        replace(request, chip_sizes=(40.0,)),
        replace(request, overlap=0.25),
        replace(request, region="500100,5500700,500300,5500900"),
        replace(request, tower="drone"),
    ]
    names = {index_folder_for(r, tmp_path).name for r in others}
    assert len(names) == len(others) and folder.name not in names
    # A raster rewritten in place is another raster: its old shards must not be reused.
    copy = tmp_path / "copy.tif"
    shutil.copy(utm_raster, copy)
    before = index_folder_for(replace(request, raster=str(copy)), tmp_path)
    stat = copy.stat()
    os.utime(copy, (stat.st_atime, stat.st_mtime + 60))
    assert index_folder_for(replace(request, raster=str(copy)), tmp_path) != before


def test_cancelled_build_started_again_finishes_where_it_stopped(tiny_bundle, utm_raster, tmp_path):
    def request() -> IndexRequest:  # built afresh each time, as a front end would
        r = IndexRequest(tiny_bundle, str(utm_raster), "", chip_sizes=CHIPS)
        r.out = index_folder_for(r, tmp_path / "indexes")
        return r

    first = request()
    done: list[int] = []
    with pytest.raises(Cancelled, match="run again to resume"):
        build_index(first, lambda d, _t, _r: done.append(d), lambda: len(done) >= 2)
    shards = first.out.with_name(first.out.name + ".partial") / "shards"
    assert len(list(shards.glob("*.npz"))) == 2 and not first.out.exists()

    again = request()
    assert again.out == first.out
    progress: list[tuple[int, int]] = []
    outcome = build_index(again, lambda d, t, _r: progress.append((d, t)))
    n = progress[-1][1]
    assert n == len(tiling.plan_grid(tiling.open_raster(utm_raster), chip_sizes=CHIPS))
    # The first shard it wrote is the third: the two saved ones were reused, not redone.
    assert progress[0][0] == 3 * SHARD_CHIPS > 0
    assert len(progress) == math.ceil(n / SHARD_CHIPS) - 2
    assert outcome.folder == first.out and not shards.parent.exists()

    straight = build_index(replace(request(), out=tmp_path / "straight"))
    a, b = Index.open(outcome.folder), Index.open(straight.folder)
    assert np.array_equal(np.sort(a.ids), np.sort(b.ids)) and a.manifest["count"] > 1000
    va = np.stack([a.faiss_index.reconstruct(int(i)) for i in a.ids])
    vb = np.stack([b.faiss_index.reconstruct(int(i)) for i in a.ids])
    assert np.abs(va - vb).max() < 1e-6
