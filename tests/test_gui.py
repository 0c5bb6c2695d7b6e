"""The GeoBridge dock and the QgsTasks behind it, in a real (offscreen) QGIS.
Over 500 lines because the dock's end-to-end scenarios share one dock fixture and its helpers.

The dock is driven the way an analyst drives it (file widgets, clicks, a dropped file); tasks
run through QGIS's task manager, and tests wait for them with a bounded event loop.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, textured, write_geotiff
from osgeo import gdal, ogr
from PIL import Image
from pyproj import Transformer
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from qgis.PyQt.QtGui import QDragEnterEvent, QDropEvent
from qgis.PyQt.QtTest import QTest

from geobridge_qgis.core.geodesy import haversine_m

SCREENSHOTS = ROOT / "out" / "screenshots"
DEMO = ROOT / "resources" / "demo"
DEMO_PHOTO = "drone_004.jpg"  # one the demo model places well: a readable screenshot
# The photo's GPS: the centre of pixel window (300..540, 300..540) of utm_raster.
PHOTO_X, PHOTO_Y = 500010 + 420 * 0.5, 5500990 - 420 * 0.5


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        QgsApplication.processEvents()
        time.sleep(0.01)


def _dms(value: float) -> tuple[float, float, float]:
    d = int(value)
    m = int((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 5)


def gps_photo(raster: Path, path: Path) -> tuple[Path, float, float]:
    """A 240 px crop of the raster, saved as a JPEG whose EXIF says where it was taken."""
    arr = gdal.Open(str(raster)).ReadAsArray(300, 300, 240, 240)
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(PHOTO_X, PHOTO_Y)
    exif = Image.Exif()
    exif.get_ifd(0x8825).update(
        {1: "N", 2: _dms(lat), 3: "E", 4: _dms(lon), 5: 0, 6: 120.0, 16: "T", 17: 45.0}
    )
    Image.fromarray(np.moveaxis(arr, 0, -1)).save(path, exif=exif, quality=92)
    return path, lon, lat


@pytest.fixture
def dock(qgis_iface, qgis_new_project):
    from geobridge_qgis import settings
    from geobridge_qgis.gui.dock import GeoBridgeDock

    settings.clear_dock()  # start from a dock nobody used
    d = GeoBridgeDock(qgis_iface, qgis_iface.mainWindow())
    d.setFloating(True)
    d.resize(440, 980)
    d.show()
    yield d
    d.shutdown()
    d.close()
    d.deleteLater()
    settings.clear_dock()


def test_dock_locates_a_photo_end_to_end(
    dock, qgis_iface, tiny_bundle, tiny_index, utm_raster, tmp_path
):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    satellite = QgsRasterLayer(str(utm_raster), "satellite")
    QgsProject.instance().addMapLayer(satellite)

    dock.bundle_edit.setFilePath(str(tiny_bundle))
    assert "tiny" in dock.bundle_info.text() and "embedding 32" in dock.bundle_info.text()
    assert "device: <b>CPU</b>" in dock.bundle_info.text()
    dock.index_edit.setFilePath(str(tiny_index))
    assert "chips of utm.tif" in dock.index_info.text()
    assert "another model" not in dock.index_info.text()

    photo, lon, lat = gps_photo(utm_raster, tmp_path / "photo.jpg")
    dock.photo_edit.setFilePath(str(photo))
    wait_for(lambda: dock.photo_meta is not None, 30)
    assert f"GPS {lat:.6f}, {lon:.6f}" in dock.exif_info.text()
    # EXIF GPS altitude is above sea level: shown as such, never taken as height above ground.
    assert "GPS altitude 120 m a.s.l." in dock.exif_info.text()
    assert "heading 45°" in dock.exif_info.text()
    pixmap = dock.thumbnail.pixmap()
    assert pixmap is not None and (pixmap.width(), pixmap.height()) == (140, 140)

    dock.top_k.setValue(5)
    QTest.mouseClick(dock.locate_button, Qt.MouseButton.LeftButton)
    assert dock.is_busy() and not dock.locate_button.isEnabled()
    wait_for(lambda: not dock.is_busy())
    assert dock.locate_button.isEnabled()
    assert dock.status.text().startswith("5 candidates for photo.jpg"), dock.status.text()

    # The table shows what the GeoPackage holds, with the distance to the photo's GPS.
    gpkg = dock.outcome.out
    ds = ogr.Open(str(gpkg))
    rows = sorted(
        (f["rank"], f["score"], f["probability"], f["lon"], f["lat"], f["cosine"])
        for f in ds.GetLayerByName("candidates")
    )
    ds = None
    assert dock.table.rowCount() == len(rows) == 5
    for r, (rank, score, prob, c_lon, c_lat, cosine) in enumerate(rows):
        assert dock.table.item(r, 0).text() == str(rank)
        assert dock.table.item(r, 1).text() in ("unverified", "refined", "metadata", "conflict")
        assert dock.table.item(r, 2).data(Qt.ItemDataRole.UserRole) == pytest.approx(
            score, abs=1e-6
        )
        assert dock.table.item(r, 3).data(Qt.ItemDataRole.UserRole) == pytest.approx(prob, abs=1e-6)
        distance = dock.table.item(r, 6).data(Qt.ItemDataRole.UserRole)
        assert distance == pytest.approx(haversine_m(c_lon, c_lat, lon, lat), abs=0.5)
        assert dock.table.item(r, 6).text() == f"{distance:,.0f} m"
        cos = dock.table.item(r, 7).data(Qt.ItemDataRole.UserRole)
        assert cos == pytest.approx(cosine, abs=1e-6)
    # What is shown agrees with the rank: the image evidence's score falls as the rank grows
    # (the metadata's own candidate has no image score), and rank 1 is the likeliest.
    methods = [dock.table.item(r, 1).text() for r in range(len(rows))]
    scores = [row[1] for row, m in zip(rows, methods, strict=True) if m != "metadata"]
    assert scores == sorted(scores, reverse=True)
    # A conflict (an image match outside the metadata's 3-sigma region) is shown after the
    # metadata's answer whatever its odds: never the silent answer. Of the rest, rank 1 is the
    # likeliest.
    settled = [row[2] for row, m in zip(rows, methods, strict=True) if m != "conflict"]
    assert methods[0] != "conflict" and settled[0] == max(settled), list(
        zip(methods, rows, strict=True)
    )

    # The result layers are in a group of their own in the results group, named by the photo
    # and the time the run started, with the expected fields.
    results = QgsProject.instance().layerTreeRoot().findGroup("GeoBridge results")
    (run,) = results.children()
    assert re.fullmatch(r"photo\.jpg \d\d:\d\d:\d\d", run.name()), run.name()
    assert dock.tabs.currentWidget() is dock.results  # the answer is in view
    layers = {node.layer().name()[len(run.name()) + 1 :]: node.layer() for node in run.findLayers()}
    assert [n.layer().name() for n in run.findLayers()] == [
        f"{run.name()} {kind}" for kind in ("candidates", "footprints", "heat map")
    ]
    candidates = layers["candidates"]
    assert {"rank", "score", "probability", "lon", "lat", "chip_ids"} <= set(
        candidates.fields().names()
    )
    assert candidates.featureCount() == 5
    assert layers["footprints"].featureCount() == 5
    # Refined footprints are drawn solid, chip squares dashed (resources/styles/footprints.qml).
    from qgis.core import QgsSymbolLayer

    stroke = layers["footprints"].renderer().symbol().symbolLayer(0)
    style = stroke.dataDefinedProperties().property(QgsSymbolLayer.PropertyStrokeStyle)
    assert style.isActive() and "'refined' THEN 'solid'" in style.expressionString()
    assert layers["heat map"].isValid()

    # Clicking a row zooms the map to that candidate.
    rect = dock.table.visualItemRect(dock.table.item(2, 0))
    QTest.mouseClick(
        dock.table.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        rect.center(),
    )
    third = dock.outcome.queries[0].candidates[2]
    extent = canvas.extent()
    assert extent.contains(QgsPointXY(third.x, third.y))
    # 1.5 chips around it (the canvas widens one side to its own aspect ratio).
    assert min(extent.width(), extent.height()) == pytest.approx(3 * third.size_m, rel=0.05)
    assert dock.table.selectionModel().selectedRows()[0].row() == 2

    copy = dock.export_results(tmp_path / "copy")
    assert copy == tmp_path / "copy.gpkg" and copy.read_bytes() == gpkg.read_bytes()

    # Screenshots, for people to look at: the dock, and the map with the results on it.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    QgsApplication.processEvents()
    assert dock.grab().save(str(SCREENSHOTS / "dock.png"))
    layers_top_first = [candidates, layers["footprints"],
                        layers["heat map"], satellite]  # fmt: skip
    image = map_screenshot(layers_top_first, satellite, SCREENSHOTS / "map.png")
    # A drawn map at full resolution: the satellite's per-pixel noise makes neighbouring
    # pixels differ (an upscaled thumbnail or a blank widget would repeat them).
    arr = np.asarray(Image.open(SCREENSHOTS / "map.png").convert("RGB")).astype(int)
    same = np.all(arr[:, 1:] == arr[:, :-1], axis=-1).mean()
    assert image.width() == 700 and same < 0.5, same


def map_screenshot(layers, extent_layer, path: Path, extent=None):
    """The layers drawn by a shown QgsMapCanvas of 700 x 700 px, saved with QWidget.grab().

    A canvas of its own: pytest-qgis's canvas lives in a hidden parent, where it never gets
    its size and renders a thumbnail."""
    from qgis.gui import QgsMapCanvas

    canvas = QgsMapCanvas()
    try:
        canvas.resize(700, 700)
        canvas.show()
        QgsApplication.processEvents()
        canvas.setDestinationCrs(extent_layer.crs())
        canvas.setLayers(layers)
        canvas.setExtent(extent or extent_layer.extent())
        rendered: list = []
        canvas.mapCanvasRefreshed.connect(lambda: rendered.append(True))
        canvas.refreshAllLayers()
        wait_for(lambda: rendered and not canvas.isDrawing(), 60)
        QgsApplication.processEvents()
        image = canvas.grab()
        assert image.save(str(path))
        return image
    finally:
        canvas.setLayers([])
        canvas.close()
        canvas.deleteLater()


def test_dock_asks_for_what_is_missing(dock, qgis_iface):
    dock.bundle_edit.setFilePath("")
    dock.index_edit.setFilePath("")
    dock.photo_edit.setFilePath("")
    QTest.mouseClick(dock.locate_button, Qt.MouseButton.LeftButton)
    assert not dock.is_busy()
    assert dock.status.text() == ("Give a model bundle and an index and a photo or a description.")
    assert dock.table.rowCount() == 0 and not dock.export_button.isEnabled()


def test_dock_reports_an_unreadable_photo(dock, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dock.photo_edit.setFilePath(str(bad))
    wait_for(lambda: dock.thumbnail.text() != "reading…", 30)
    assert dock.thumbnail.text() == "cannot read this photo"
    assert "broken.jpg" in dock.exif_info.text() and dock.photo_meta is None


def test_dropping_an_image_file_on_the_dock_sets_the_photo(dock, utm_raster, tmp_path):
    photo, _, _ = gps_photo(utm_raster, tmp_path / "dropped.jpg")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")

    def drag_and_drop(path: Path) -> bool:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        enter = QDragEnterEvent(
            QPoint(20, 20),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QgsApplication.sendEvent(dock, enter)
        if not enter.isAccepted():
            return False
        drop = QDropEvent(
            QPointF(20, 20),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QgsApplication.sendEvent(dock, drop)
        return drop.isAccepted()

    assert not drag_and_drop(notes)
    assert dock.photo_edit.filePath() == ""
    assert drag_and_drop(photo)
    assert dock.photo_edit.filePath() == str(photo)
    wait_for(lambda: dock.photo_meta is not None, 30)
    assert dock.exif_info.text().startswith("GPS ")


def test_cancelled_index_task_leaves_no_index_folder(tiny_bundle, utm_raster, tmp_path):
    from geobridge_qgis.core.service import IndexRequest
    from geobridge_qgis.tasks import IndexTask

    out = tmp_path / "index"
    # 20 m chips: ~3,500 chips, so the build spans many shards and the cancel lands mid-way.
    task = IndexTask(IndexRequest(tiny_bundle, str(utm_raster), out, chip_sizes=(20.0,)))
    # progressChanged comes from the worker thread after each saved shard: cancel there.
    task.progressChanged.connect(lambda value: task.cancel() if value > 0 else None)
    outcome: list = []
    task.succeeded.connect(lambda result: outcome.append(("ok", result)))
    task.failed.connect(lambda error: outcome.append(("failed", error)))
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: outcome, 120)
    assert outcome[0][0] == "failed" and task.cancelled_by_user
    assert not out.exists()
    assert list((tmp_path / "index.partial" / "shards").glob("*.npz"))  # kept for a resume


def test_index_task_builds_an_index_over_a_region(tiny_bundle, utm_raster, tmp_path):
    from geobridge_qgis.core.service import IndexRequest
    from geobridge_qgis.core.tiling import Region
    from geobridge_qgis.tasks import IndexTask

    out = tmp_path / "index"
    region = Region.from_bbox("500100,5500700,500300,5500900", None)
    task = IndexTask(IndexRequest(tiny_bundle, str(utm_raster), out, region=region))
    results: list = []
    task.succeeded.connect(results.append)
    task.failed.connect(lambda e: results.append(RuntimeError(e)))
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: results, 120)
    assert [r.folder for r in results] == [out]
    assert any(m.startswith("plan:") for m in task.messages)
    with np.load(out / "chips.npz") as z:
        assert len(z["ids"]) > 0
        assert z["cx"].min() >= 500100 and z["cx"].max() <= 500300


def test_consecutive_tasks_on_pooled_threads(tiny_bundle, tiny_index, utm_raster, tmp_path):
    """Engine tasks one after another reuse QGIS's pooled threads; with pyproj 3.7.1 the
    second task on a thread crashed QGIS (a freed PROJ context) unless the engine work runs on
    threads the plugin owns."""
    from geobridge_qgis.core.service import IndexRequest, LocateRequest
    from geobridge_qgis.tasks import IndexTask, LocateTask

    for i in range(3):
        request = LocateRequest(tiny_bundle, tiny_index, text="a field", top_k=2,
                                out=tmp_path / f"r{i}.gpkg")  # fmt: skip
        locate = LocateTask(request, add_layers=False)
        done: list = []
        locate.succeeded.connect(done.append)
        locate.failed.connect(done.append)
        QgsApplication.taskManager().addTask(locate)
        wait_for(lambda done=done: done, 60)
        assert [len(q.candidates) for q in done[0].queries] == [2]
        build = IndexTask(
            IndexRequest(tiny_bundle, str(utm_raster), tmp_path / f"i{i}", chip_sizes=(200.0,))
        )
        built: list = []
        build.succeeded.connect(built.append)
        build.failed.connect(built.append)
        QgsApplication.taskManager().addTask(build)
        wait_for(lambda built=built: built, 60)
        assert [b.folder for b in built] == [tmp_path / f"i{i}"]


def test_dock_on_the_demo_world(dock, qgis_iface, tmp_path):
    """The dock with the demo model on the demo world, for the screenshots people look at:
    a real drone photo, its EXIF, ranked candidates, and the map with the true place."""
    import csv

    from qgis.core import QgsFeature, QgsGeometry, QgsMarkerSymbol, QgsRectangle, QgsVectorLayer

    from geobridge_qgis.core.service import IndexRequest, build_index

    bundle, world = DEMO / "bundle", DEMO / "world"
    if not (bundle / "manifest.json").is_file() or not (world / "satellite.tif").is_file():
        pytest.skip("resources/demo (bundle and world) is not there yet")
    with open(world / "drone" / "truth.csv", newline="") as f:
        truth = next(r for r in csv.DictReader(f) if r["file"] == DEMO_PHOTO)
    index = build_index(IndexRequest(bundle, str(world / "satellite.tif"), tmp_path / "index"))
    index = index.folder
    satellite = QgsProject.instance().addMapLayer(
        QgsRasterLayer(str(world / "satellite.tif"), "satellite")
    )
    dock.bundle_edit.setFilePath(str(bundle))
    dock.index_edit.setFilePath(str(index))
    dock.photo_edit.setFilePath(str(world / "drone" / DEMO_PHOTO))
    wait_for(lambda: dock.photo_meta is not None, 30)
    assert dock.exif_info.text().startswith("GPS ") and "heading" in dock.exif_info.text()
    QTest.mouseClick(dock.locate_button, Qt.MouseButton.LeftButton)
    wait_for(lambda: not dock.is_busy(), 120)
    q = dock.outcome.queries[0]
    # The photo's GPS, altitude and heading narrow the search to a few chips near it.
    assert "Priors used: heading, altitude, gps" in dock.status.text()
    assert 1 <= dock.table.rowCount() == len(q.candidates) <= 10, dock.status.text()
    best = q.candidates[0]
    assert haversine_m(best.lon, best.lat, float(truth["lon"]), float(truth["lat"])) < 100
    for row, c in enumerate(q.candidates):  # distances to the photo's own (noisy) GPS
        expected = haversine_m(c.lon, c.lat, q.photo_lon, q.photo_lat)
        assert dock.table.item(row, 6).data(Qt.ItemDataRole.UserRole) == pytest.approx(
            expected, abs=0.5
        )
        assert dock.table.item(row, 1).text() in ("unverified", "refined", "metadata", "conflict")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    QgsApplication.processEvents()
    assert dock.grab().save(str(SCREENSHOTS / "dock-demo.png"))
    group = QgsProject.instance().layerTreeRoot().findGroup("GeoBridge results")
    results = [node.layer() for node in group.findLayers()]
    marker = QgsVectorLayer("Point?crs=EPSG:4326", "truth", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(f"POINT({truth['lon']} {truth['lat']})"))
    marker.dataProvider().addFeatures([feature])
    marker.renderer().setSymbol(QgsMarkerSymbol.createSimple(
        {"name": "cross2", "size": "7", "color": "white", "outline_color": "white",
         "outline_width": "1"}))  # fmt: skip
    marker = QgsProject.instance().addMapLayer(marker)
    x, y = Transformer.from_crs(4326, satellite.crs().postgisSrid(), always_xy=True).transform(
        float(truth["lon"]), float(truth["lat"])
    )
    view = QgsRectangle(x - 500, y - 500, x + 500, y + 500)
    map_screenshot([marker, *results, satellite], satellite, SCREENSHOTS / "map-demo.png", view)


@pytest.fixture
def geobridge_processing(qgis_processing):
    from geobridge_qgis.processing.provider import GeoBridgeProvider

    registry = QgsApplication.processingRegistry()
    provider = GeoBridgeProvider()
    if registry.providerById("geobridge") is None:
        registry.addProvider(provider)
    yield
    if registry.providerById("geobridge") is provider:
        registry.removeProvider(provider)


def test_dock_builds_an_index_of_the_active_raster_layer(
    dock, qgis_iface, tiny_bundle, utm_raster, tmp_path, geobridge_processing
):
    from geobridge_qgis import settings

    saved = settings.index_cache_folder(), settings.chip_sizes()
    settings.set_index_cache_folder(str(tmp_path))
    settings.set_chip_sizes([60, 90])  # the dock's builds use the GeoBridge setting
    try:
        dock.bundle_edit.setFilePath(str(tiny_bundle))
        points = QgsVectorLayer("Point?crs=EPSG:32633", "not a raster", "memory")
        QgsProject.instance().addMapLayer(points)
        qgis_iface.setActiveLayer(points)
        assert not dock.build_index()
        assert "select the raster layer" in dock.status.text()

        layer = QgsRasterLayer(str(utm_raster), "my satellite")
        QgsProject.instance().addMapLayer(layer)
        qgis_iface.setActiveLayer(layer)
        QTest.mouseClick(dock.build_button, Qt.MouseButton.LeftButton)
        assert dock.is_busy() and not dock.build_button.isEnabled()
        wait_for(lambda: not dock.is_busy())
        index = Path(dock.index_edit.filePath())
        assert index.parent == tmp_path and index.name.startswith("my_satellite-")
        assert dock.status.text().startswith("Index ready"), dock.status.text()
        assert "chips of utm.tif" in dock.index_info.text()
        from geobridge_qgis.core.bundle import Bundle
        from geobridge_qgis.core.index import Index

        opened = Index.open(index, Bundle.load(tiny_bundle))  # made by this bundle
        assert opened.manifest["count"] > 100 and dock.build_button.isEnabled()
        assert opened.manifest["grid"]["chip_sizes"] == [60.0, 90.0]

        # A build that fails says why in the status line (not only in the Processing log).
        dock.bundle_edit.setFilePath(str(tmp_path))  # not a bundle
        assert dock.build_index()
        wait_for(lambda: not dock.is_busy())
        assert dock.status.text().startswith("Index build failed: "), dock.status.text()
        assert "not a GeoBridge bundle" in dock.status.text()
    finally:
        settings.set_index_cache_folder(saved[0])
        settings.set_chip_sizes(saved[1])


def test_dock_build_cancelled_and_started_again_resumes(
    dock, qgis_iface, tiny_bundle, tmp_path, geobridge_processing
):
    from geobridge_qgis import settings
    from geobridge_qgis.core import defaults, tiling
    from geobridge_qgis.core.index import SHARD_CHIPS, Index

    # 2.4 km square: ~3,300 chips of the default sizes, thirteen shards to cancel among.
    raster = write_geotiff(tmp_path / "wide.tif", textured(2000, 2000, seed=5), gsd=1.2)
    total = len(tiling.plan_grid(tiling.open_raster(raster), chip_sizes=defaults.CHIP_SIZES))
    saved = settings.index_cache_folder()
    settings.set_index_cache_folder(str(tmp_path / "indexes"))
    try:
        dock.bundle_edit.setFilePath(str(tiny_bundle))
        layer = QgsRasterLayer(str(raster), "wide area")
        QgsProject.instance().addMapLayer(layer)
        qgis_iface.setActiveLayer(layer)
        values: list[int] = []
        dock.progress.valueChanged.connect(values.append)
        assert dock.build_index()
        wait_for(lambda: any(v > 0 for v in values))
        dock.cancel()
        wait_for(lambda: not dock.is_busy())
        assert dock.status.text().startswith("Cancelled; building again"), dock.status.text()
        (partial,) = (tmp_path / "indexes").glob("wide_area-*.partial")
        kept = len(list((partial / "shards").glob("*.npz")))
        assert 0 < kept < math.ceil(total / SHARD_CHIPS)  # really half-way

        values.clear()
        QTest.mouseClick(dock.build_button, Qt.MouseButton.LeftButton)
        wait_for(lambda: not dock.is_busy(), 300)
        assert dock.status.text().startswith("Index ready"), dock.status.text()
        index = Path(dock.index_edit.filePath())
        assert index.name == partial.name[: -len(".partial")] and not partial.exists()
        # Its first progress is past the kept shards: they were reused, not redone.
        first = next(v for v in values if v > 0)
        assert first >= int(100 * (kept + 1) * SHARD_CHIPS / total) > 0
        manifest = Index.open(index).manifest
        assert manifest["count"] + manifest["skipped"] == total

        # Built once, found again: a third click starts nothing.
        assert dock.build_index() and not dock.is_busy()
        assert "built before from the same inputs" in dock.status.text()
    finally:
        settings.set_index_cache_folder(saved)
