"""The distributed build (geobridge_scale) on a local Ray: the same index as the local build,
resume, one-line errors; the on-disk IVF path; and nothing outside it imports Ray."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

from geobridge_qgis.core import blockplan, chipid, tiling

DEMO = ROOT / "resources" / "demo"
BUNDLE = DEMO / "bundle"
RASTER = DEMO / "world" / "satellite.tif"
# 600 m of the demo world (about 220 chips) holding 7 of its photos.
BBOX = "667100,5871600,667700,5872200"
PHOTOS = ["drone_012.jpg", "drone_016.jpg", "drone_025.jpg", "drone_032.jpg"]
SMALL_BBOX = "667100,5871600,667400,5871900"  # about 60 chips


def _ray():
    return pytest.importorskip(
        "ray", reason="ray is not installed: the distributed build needs `make setup SCALE=1`"
    )


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the session: 2 CPUs, a small object store, no dashboard."""
    ray = _ray()
    ray.init(
        num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_index(tmp_path_factory) -> Path:
    from geobridge_qgis.core import service

    out = tmp_path_factory.mktemp("local") / "local"
    service.build_index(service.IndexRequest(BUNDLE, str(RASTER), out, region=BBOX))
    return out


@pytest.fixture(scope="module")
def ray_index(ray_address, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "ray"
    args = ["--bundle", BUNDLE, "--raster", RASTER, "--bbox", BBOX, "--out", out]
    done = run_cli(
        "geobridge_qgis",
        "index",
        "--engine",
        "ray",
        "--ray-address",
        ray_address,
        "--block-m",
        "250",
        *args,
    )
    assert done.returncode == 0, done.stderr
    assert "plan: 9 blocks of 250 m (9 to encode), estimated " in done.stderr
    return out


def _assert_same_answers(a: dict, b: dict, tol: float = 2e-3) -> None:
    """The same chips at each rank with the same scores (within fp16 storage's rounding), and
    the same candidates in the same order (members by id); two chips whose scores tie within
    that rounding may trade places."""
    for name in PHOTOS:
        (chips_a, cands_a), (chips_b, cands_b) = a[name], b[name]
        sa, sb = np.array([s for _, s in chips_a]), np.array([s for _, s in chips_b])
        assert np.abs(sa - sb).max() < tol, name
        for i, ((ia, _), (ib, _)) in enumerate(zip(chips_a, chips_b, strict=True)):
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(sa) and abs(sa[j] - sa[i]) < tol]
            assert ia == ib or (near and ib in [chips_a[j][0] for j in near]), (name, i)
        assert cands_a == cands_b, name


def _top10(index_path: Path) -> dict[str, tuple]:
    """Per photo: the top-10 chips of retrieval and the candidates made of them."""
    from geobridge_qgis.core import service

    request = service.LocateRequest(
        BUNDLE,
        index_path,
        rerank=False,
        refine=False,
        use_gps=False,
        use_altitude=False,
        use_heading=False,
    )
    session = service.LocateSession(BUNDLE, index_path)
    try:
        options = request.query_options()
        out = {}
        for name in PHOTOS:
            q = session.query(options, DEMO / "world" / "drone" / name)
            chips = [(int(c[0]), float(c[1])) for c in q.result.chips[:10]]
            out[name] = (chips, [tuple(sorted(c.chip_ids)) for c in q.candidates])
        return out
    finally:
        session.close()


def test_ray_build_equals_the_local_build(ray_index, local_index):
    from geobridge_qgis.core.index import Index

    a, b = Index.open(ray_index), Index.open(local_index)
    assert a.manifest["factory"] == b.manifest["factory"] == "IDMap2,Flat"
    for key in ("model_id", "precision", "raster", "embed_dim", "count", "skipped"):
        assert a.manifest[key] == b.manifest[key], key
    assert a.manifest["grid"]["ids_checksum"] == b.manifest["grid"]["ids_checksum"]
    assert sorted(a.ids) == sorted(b.ids) and len(a.ids) > 150
    va = np.stack([a.faiss_index.reconstruct(int(i)) for i in b.ids])
    vb = np.stack([b.faiss_index.reconstruct(int(i)) for i in b.ids])
    assert np.abs(va - vb).max() < 2e-3  # the blocks store fp16
    assert (a.root / "chips.gpkg").exists()
    top_a, top_b = _top10(ray_index), _top10(local_index)
    for name in PHOTOS:
        assert len(top_a[name][0]) == 10 and top_a[name][1]
    _assert_same_answers(top_a, top_b)


def test_locate_cli_opens_a_ray_index(ray_index, local_index):
    photo = DEMO / "world" / "drone" / PHOTOS[0]
    answers = []
    for index in (ray_index, local_index):
        done = run_cli(
            "geobridge_qgis",
            "locate",
            "--bundle",
            BUNDLE,
            "--index",
            index,
            "--photo",
            photo,
            "--no-rerank",
            "--json",
        )
        assert done.returncode == 0, done.stderr
        answers.append([(r["rank"], r["chip_ids"]) for r in json.loads(done.stdout)])
    assert answers[0] and answers[0] == answers[1]


def test_cancelled_build_resumes_skipping_written_blocks(ray_address, local_index, tmp_path):
    from geobridge_qgis.core import service
    from geobridge_qgis.core.index import Cancelled, Index
    from geobridge_scale import blocks
    from geobridge_scale.build import build_index_ray

    out = tmp_path / "resumed"
    request = service.IndexRequest(BUNDLE, str(RASTER), out, region=SMALL_BBOX)
    seen: list[int] = []

    def after_one_block() -> bool:
        seen.append(1)
        return True

    with pytest.raises(Cancelled, match="run again to resume"):
        build_index_ray(request, block_m=150, factory="IVF4,Flat", cancelled=after_one_block)
    work = tmp_path / "resumed.partial"
    assert seen == [1] and not out.exists()
    total = blocks.read_manifest(work / blocks.MANIFEST).num_rows
    # Encoding may run ahead of the driver: keep the first block, as if killed after it.
    files = sorted((work / blocks.EMBEDDINGS).glob("*.parquet"))
    assert len(files) >= 1 and total > 4
    for p in files[1:]:
        p.unlink()
    # A block killed mid-write leaves only a .tmp file: it is not taken as done.
    (work / blocks.EMBEDDINGS / "half_written.parquet.tmp").write_bytes(b"half")

    lines: list[str] = []
    encoded: list[tuple[int, int]] = []
    # Resumed into the large-index path: IVF lists filled as Ray tasks, merged on disk.
    done = build_index_ray(
        request,
        block_m=150,
        factory="IVF4,Flat",
        log=lines.append,
        progress=lambda d, t, r: encoded.append((d, t)),
    )
    assert f"({total - 1} to encode)" in lines[0]
    assert len(encoded) == total - 1  # one progress call per block encoded
    assert encoded[-1][0] == encoded[-1][1]  # estimates give way to the chips planned
    assert done.folder == out and not work.exists()
    resumed = Index.open(out)
    local = Index.open(local_index)
    small = tiling.plan_grid(tiling.open_raster(RASTER), tiling.Region.from_bbox(SMALL_BBOX))
    assert sorted(resumed.ids) == sorted(small.ids)
    assert set(resumed.ids) <= set(local.ids)
    assert resumed.manifest["factory"] == "IVF4,Flat" and resumed.manifest["ivfdata"]
    # Every list probed: each chip's local embedding finds that chip first, at cosine ~1.
    ids = np.asarray(sorted(resumed.ids))
    queries = np.stack([local.faiss_index.reconstruct(int(i)) for i in ids])
    scores, found = resumed.faiss_index.search(queries, 1)
    assert np.array_equal(found[:, 0], ids)
    assert np.abs(scores[:, 0] - 1).max() < 2e-3


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for w in words:
        assert w in lines[0]


def test_bad_raster_is_one_line(tmp_path):
    _ray()
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    done = run_cli(
        "geobridge_qgis",
        "index",
        "--engine",
        "ray",
        "--bundle",
        BUNDLE,
        "--raster",
        bad,
        "--out",
        tmp_path / "i",
    )
    _one_line_error(done, str(bad))


def test_unreachable_ray_address_is_one_line(tmp_path):
    _ray()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    done = run_cli(
        "geobridge_qgis",
        "index",
        "--engine",
        "ray",
        "--ray-address",
        address,
        "--bundle",
        BUNDLE,
        "--raster",
        RASTER,
        "--bbox",
        SMALL_BBOX,
        "--out",
        tmp_path / "i",
    )
    _one_line_error(done, address, "no Ray cluster")
    assert not (tmp_path / "i.partial").exists()


# ---------------------------------------------------------------- without Ray


def test_nothing_outside_the_scale_package_imports_ray():
    code = (
        "import sys, geobridge_qgis, geobridge_qgis.__main__, geobridge_qgis.plugin, "
        "geobridge_qgis.core.service, geobridge_qgis.core.index, geobridge_qgis.core.locate, "
        "geobridge_qgis.core.tiling, geobridge_qgis.tasks, tools.demo, "
        "geobridge_scale.build, geobridge_scale.ivf, geobridge_scale.stages\n"
        "bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
        "print('RAY' if bad else 'CLEAN')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "CLEAN"


def test_chip_ids_carry_their_place():
    rng = np.random.default_rng(0)
    n = 10_000
    si = rng.integers(0, chipid.MAX_SIZE_CLASSES, n)
    kx = rng.integers(-(2**28) + 1, 2**28 - 1, n)
    ky = rng.integers(-(2**28) + 1, 2**28 - 1, n)
    ids = chipid.encode(si, kx, ky)
    assert (ids > 0).all() and len(np.unique(ids)) == n
    s2, x2, y2 = chipid.decode(ids)
    assert (s2 == si).all() and (x2 == kx).all() and (y2 == ky).all()
    # The engine's grid uses these ids: footprints follow from the ids alone.
    grid = tiling.plan_grid(tiling.open_raster(RASTER), tiling.Region.from_bbox(BBOX))
    sizes, cx, cy = chipid.centres(grid.ids, grid.chip_sizes, grid.overlap)
    assert np.array_equal(sizes, grid.sizes) and np.allclose(cx, grid.cx)
    assert np.allclose(cy, grid.cy)
    assert np.array_equal(
        chipid.ids_at(0, grid.cx, grid.cy, grid.chip_sizes, grid.overlap)[
            grid.sizes == grid.chip_sizes[0]
        ],
        grid.ids[grid.sizes == 100],
    )
    # Z order: neighbours on the ground are near in id.
    a = chipid.encode(0, np.array([1000]), np.array([1000]))[0]
    assert abs(int(chipid.encode(0, np.array([1001]), np.array([1000]))[0]) - int(a)) < 4


@pytest.mark.parametrize("max_ranges", [1, 4, 1000])
def test_a_box_is_a_few_id_ranges(max_ranges):
    grid = tiling.plan_grid(tiling.open_raster(RASTER))
    box = (grid.cx.min() + 310, grid.cy.min() + 480, grid.cx.min() + 910, grid.cy.min() + 1420)
    ranges = chipid.ranges_in_box(box, grid.chip_sizes, grid.overlap, max_ranges)
    assert len(ranges) <= max_ranges * len(grid.chip_sizes)
    inside = (grid.cx >= box[0]) & (grid.cx <= box[2]) & (grid.cy >= box[1]) & (grid.cy <= box[3])
    covered = np.zeros(len(grid), bool)
    for lo, hi in ranges:
        covered |= (grid.ids >= lo) & (grid.ids <= hi)
    assert covered[inside].all()
    if max_ranges == 1000:
        assert np.array_equal(covered, inside)  # exact when enough ranges are allowed


def merged_on_disk(tmp_path: Path, x, ids, factory: str, train: int, blocks: int) -> Path:
    """An index built as geobridge_scale builds one: trained on the first `train` vectors,
    filled block by block (`blocks` of them), merged on disk; the folder holding it."""
    import faiss

    from geobridge_scale import ivf

    trained = ivf.train_ivf(x[:train], factory)
    faiss.write_index(trained, str(tmp_path / "trained.faiss"))
    parts = []
    for b, rows in enumerate(np.array_split(np.arange(len(ids)), blocks)):
        parts.append(tmp_path / f"b{b}.faiss")
        ivf.fill_block(tmp_path / "trained.faiss", ids[rows], x[rows], parts[-1])
    folder = tmp_path / "merged"
    folder.mkdir()
    ivf.merge(tmp_path / "trained.faiss", parts, folder)
    return folder


def test_ivf_merged_on_disk_opens_mapped_and_filters_by_box(tmp_path):
    faiss = pytest.importorskip("faiss")
    from geobridge_scale import ivf

    rng = np.random.default_rng(1)
    sizes, overlap = (100.0, 150.0), 0.5
    kx, ky = np.meshgrid(np.arange(-60, 60), np.arange(1000, 1100))
    ids = chipid.encode(0, kx.ravel(), ky.ravel())
    x = rng.standard_normal((len(ids), 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    folder = merged_on_disk(tmp_path, x, ids, "IVF16,SQ8", 3000, 5)
    moved = folder.rename(tmp_path / "moved")  # the ivfdata is found beside the index
    index = ivf.open_ondisk(moved)
    assert index.ntotal == len(ids)
    faiss.extract_index_ivf(index).nprobe = 16  # every list: exact up to SQ8 rounding
    q = x[[5, 500, 5000]] + 0.01
    _, got = index.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(g) & set(ids[t])) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.9
    _, cx, cy = chipid.centres(ids, sizes, overlap)
    box = (
        float(cx.min() + 1000),
        float(cy.min() + 500),
        float(cx.min() + 3000),
        float(cy.min() + 2500),
    )
    _, boxed = ivf.search_box(index, q, 10, box, sizes, overlap, nprobe=16)
    inside = (cx >= box[0]) & (cx <= box[2]) & (cy >= box[1]) & (cy <= box[3])
    for qi, row in enumerate(boxed):
        assert (row >= 0).all()
        assert set(row) <= set(ids[inside])
        s = q[qi] @ x[inside].T
        want = set(ids[inside][np.argsort(-s)[:10]])
        assert len(set(row) & want) >= 9


def test_ray_build_honours_no_flip(ray_address, local_index, tmp_path):
    """--no-flip reaches the encode actors: the Ray build's embeddings are the local --no-flip
    build's, not the flipped ones, and the index records it."""
    from geobridge_qgis.core import service
    from geobridge_qgis.core.index import Index
    from geobridge_scale.build import build_index_ray

    def request(name: str) -> service.IndexRequest:
        return service.IndexRequest(
            BUNDLE, str(RASTER), tmp_path / name, region=SMALL_BBOX, flip=False
        )

    local = Index.open(service.build_index(request("local")).folder)
    ray = Index.open(build_index_ray(request("ray"), block_m=150).folder)
    assert ray.manifest["flip_tta"] is False and local.manifest["flip_tta"] is False
    assert sorted(ray.ids) == sorted(local.ids) and len(local.ids) > 40
    va = np.stack([ray.faiss_index.reconstruct(int(i)) for i in local.ids])
    vb = np.stack([local.faiss_index.reconstruct(int(i)) for i in local.ids])
    assert np.abs(va - vb).max() < 2e-3  # the blocks store fp16
    flipped = Index.open(local_index)
    assert flipped.manifest["flip_tta"] is True
    vf = np.stack([flipped.faiss_index.reconstruct(int(i)) for i in local.ids])
    assert np.abs(va - vf).max() > 1e-2


def test_ivf_publish_opens_like_any_index(local_index, tmp_path):
    """The large-index path on the demo's blocks: IVF merged on disk, opened by Index.open
    (memory-mapped), and locate answers as on the Flat index (every list probed)."""
    pytest.importorskip("pyarrow")
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.index import Index
    from geobridge_scale import blocks
    from geobridge_scale.build import publish

    local = Index.open(local_index)
    bundle = Bundle.load(BUNDLE)
    region = tiling.Region.from_bbox(BBOX)
    plan = blockplan.plan_blocks(tiling.open_raster(RASTER), region, block_m=250.0)
    work = tmp_path / "ivf.partial"
    (work / blocks.EMBEDDINGS).mkdir(parents=True)
    for i, name in enumerate(plan.names):
        ids = plan.chips(i).ids
        emb = np.stack([local.faiss_index.reconstruct(int(c)) for c in ids])
        blocks.write_block(work, name, ids, emb)
    (work / "build.json").write_text("{}")
    build = {
        "precision": local.manifest["precision"],
        "raster": local.manifest["raster"],
        "grid": plan.signature(),
        "flip_tta": True,
        "engine": "ray",
    }
    out = publish(
        work,
        tmp_path / "ivf",
        plan,
        bundle,
        build,
        RASTER,
        region,
        "satellite",
        factory="IVF4,Flat",
    )
    assert not work.exists() and (out / "vectors.ivfdata").exists()
    moved = out.rename(tmp_path / "moved")
    index = Index.open(moved, bundle)
    assert index.manifest["factory"] == "IVF4,Flat" and index.manifest["ivfdata"]
    assert index.faiss_index.ntotal == local.faiss_index.ntotal
    assert sorted(index.ids) == sorted(local.ids)
    # The grid's count and checksum, summed block by block, are the local build's.
    for key in ("count", "ids_checksum"):
        assert index.manifest["grid"][key] == local.manifest["grid"][key], key
    assert index.manifest["skipped"] == local.manifest["skipped"] == 0
    _assert_same_answers(_top10(moved), _top10(local_index))
