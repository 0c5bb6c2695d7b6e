"""Search regions drawn with the GeoBridge map tools, the region to search, the satellite
basemap action and the plugin's settings, in a real (offscreen) QGIS.

The tools get the mouse events a user's clicks give them (canvas pixel positions); what they
draw is checked in the "GeoBridge search regions" layer, in the project CRS.
"""

from __future__ import annotations

import math
from urllib.parse import unquote

import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, QSize, Qt
from qgis.PyQt.QtGui import QKeyEvent
from qgis.PyQt.QtWidgets import QAction, QFrame

from geobridge_qgis import settings
from geobridge_qgis.gui import maptools
from geobridge_qgis.gui.maptools import PolygonRegionTool, RectangleRegionTool, search_region

UTM = QgsCoordinateReferenceSystem("EPSG:32633")
KEYS = [
    settings.BUNDLES_FOLDER,
    settings.INDEX_CACHE_FOLDER,
    settings.PROVIDERS,
    settings.BATCH_SIZE,
    settings.CHIP_SIZES,
    settings.BASEMAP_URL,
    settings.BASEMAP_NAME,
]


@pytest.fixture
def clean_settings():
    """The tests' values must not stay in the user's profile, nor theirs leak in."""
    s = QgsSettings()
    saved = {k: s.value(k) for k in KEYS if s.contains(k)}
    for k in KEYS:
        s.remove(k)
    yield
    for k in KEYS:
        s.remove(k)
    for k, v in saved.items():
        s.setValue(k, v)


@pytest.fixture
def canvas(qgis_iface, qgis_new_project, monkeypatch):
    """A shown 400 x 400 px canvas showing 400 m x 400 m of UTM 33N, the iface's canvas for
    the test; the project is in UTM 33N.

    A canvas of its own: pytest-qgis's lives in a hidden parent, where it never gets its
    size (its map stays a thumbnail)."""
    project = QgsProject.instance()
    project.setCrs(UTM)
    c = QgsMapCanvas()
    c.setFrameShape(QFrame.Shape.NoFrame)  # the map gets all 400 px
    c.resize(400, 400)
    c.show()
    QgsApplication.processEvents()
    assert c.mapSettings().outputSize() == QSize(400, 400)
    c.setDestinationCrs(UTM)
    c.setExtent(QgsRectangle(500000, 5500000, 500400, 5500400))
    monkeypatch.setattr(qgis_iface, "mapCanvas", lambda: c)
    yield c
    if c.mapTool() is not None:
        c.unsetMapTool(c.mapTool())
    for layer in list(project.mapLayers().values()):
        project.removeMapLayer(layer)
    c.close()
    c.deleteLater()


def mouse(canvas, kind, x, y, button=Qt.MouseButton.LeftButton):
    buttons = button if kind == QEvent.Type.MouseButtonPress else Qt.MouseButton.NoButton
    return QgsMapMouseEvent(
        canvas, kind, QPoint(x, y), button, buttons, Qt.KeyboardModifier.NoModifier
    )


def click(tool, canvas, x, y, button=Qt.MouseButton.LeftButton):
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, x, y, button))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, x, y, button))


def to_map(canvas, x, y) -> QgsPointXY:
    return canvas.getCoordinateTransform().toMapCoordinates(x, y)


def shoelace(points) -> float:
    return abs(
        sum(
            a.x() * b.y() - b.x() * a.y()
            for a, b in zip(points, points[1:] + points[:1], strict=True)
        )
        / 2
    )


def regions():
    layer = maptools.regions_layer()
    assert layer is not None
    return layer, sorted(layer.getFeatures(), key=lambda f: f.id())


def test_rectangle_tool_adds_a_region_in_the_project_crs(canvas):
    assert maptools.regions_layer() is None  # made on first use only
    tool = RectangleRegionTool(canvas)
    canvas.setMapTool(tool)
    drawn = []
    tool.regionDrawn.connect(drawn.append)
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 100, 100))
    tool.canvasMoveEvent(mouse(canvas, QEvent.Type.MouseMove, 200, 180))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 300, 250))

    layer, features = regions()
    assert layer.name() == "GeoBridge search regions"
    assert layer.crs().authid() == "EPSG:32633"
    assert [f.id() for f in features] == [f.id() for f in drawn]
    (f,) = features
    corner_a, corner_b = to_map(canvas, 100, 100), to_map(canvas, 300, 250)
    expected = abs(corner_a.x() - corner_b.x()) * abs(corner_a.y() - corner_b.y())
    assert expected == pytest.approx(200 * 150 * canvas.mapUnitsPerPixel() ** 2)
    geom = f.geometry()
    assert geom.area() == pytest.approx(expected, rel=1e-9)
    box = geom.boundingBox()
    assert box.xMinimum() == pytest.approx(corner_a.x())
    assert box.yMaximum() == pytest.approx(corner_a.y())
    assert box.xMaximum() == pytest.approx(corner_b.x())
    assert box.yMinimum() == pytest.approx(corner_b.y())
    assert len(geom.asPolygon()[0]) == 5  # four corners, closed
    assert f["name"] and f["created"].isValid()

    # A click without a drag is no region.
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 50, 50))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 50, 50))
    assert layer.featureCount() == 1


def test_polygon_tool_left_clicks_then_right_click(canvas):
    # The canvas shows Web Mercator; the regions layer stays in the project CRS (UTM 33N).
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(UTM, mercator, QgsProject.instance())
    canvas.setDestinationCrs(mercator)
    canvas.setExtent(
        to_mercator.transformBoundingBox(QgsRectangle(500000, 5500000, 500400, 5500400))
    )
    canvas.refresh()
    tool = PolygonRegionTool(canvas)
    canvas.setMapTool(tool)
    pixels = [(50, 60), (320, 80), (350, 300), (120, 340), (40, 200)]
    for x, y in pixels:
        click(tool, canvas, x, y)
        tool.canvasMoveEvent(mouse(canvas, QEvent.Type.MouseMove, x + 5, y + 5))
    assert maptools.regions_layer() is None  # nothing until the right click
    click(tool, canvas, 200, 200, Qt.MouseButton.RightButton)

    layer, (f,) = regions()
    assert layer.crs().authid() == "EPSG:32633"
    back = QgsCoordinateTransform(mercator, UTM, QgsProject.instance())
    expected = [back.transform(to_map(canvas, x, y)) for x, y in pixels]
    ring = f.geometry().asPolygon()[0]
    assert len(ring) == len(pixels) + 1 and ring[0] == ring[-1]
    for got, want in zip(ring, expected, strict=False):
        assert got.x() == pytest.approx(want.x(), abs=1e-6)
        assert got.y() == pytest.approx(want.y(), abs=1e-6)
    assert f.geometry().area() == pytest.approx(shoelace(expected), rel=1e-6)
    assert 0.3 * 400 * 400 < f.geometry().area() < 400 * 400  # the 400 m x 400 m on screen

    # Two vertices and a right click: no region; Esc drops a half-drawn polygon.
    click(tool, canvas, 10, 10)
    click(tool, canvas, 100, 10)
    click(tool, canvas, 100, 10, Qt.MouseButton.RightButton)
    assert layer.featureCount() == 1
    for x, y in pixels[:3]:
        click(tool, canvas, x, y)
    tool.keyPressEvent(
        QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier)
    )
    assert tool.points == []
    click(tool, canvas, 200, 200, Qt.MouseButton.RightButton)
    assert layer.featureCount() == 1
    # Another polygon adds a second feature to the same layer (found by property, not name).
    layer.setName("renamed by the user")
    for x, y in pixels[:3]:
        click(tool, canvas, x, y)
    click(tool, canvas, 0, 0, Qt.MouseButton.RightButton)
    assert maptools.regions_layer() is layer and layer.featureCount() == 2
    assert len(QgsProject.instance().mapLayers()) == 1


def test_a_region_that_cannot_be_stored_is_reported_not_raised(canvas, monkeypatch, tmp_path):
    """Drawing where the regions file cannot go (here: its folder would be inside a file)
    gives the user one line through `regionFailed`; the tool stays usable."""
    UserError = maptools.UserError

    blocker = tmp_path / "not a folder"
    blocker.write_text("")
    monkeypatch.setattr(maptools, "regions_path", lambda project: blocker / "r.gpkg")
    with pytest.raises(UserError, match="not a folder: cannot make the folder"):
        maptools.regions_layer(create=True)
    tool = PolygonRegionTool(canvas)
    canvas.setMapTool(tool)
    failures, drawn = [], []
    tool.regionFailed.connect(failures.append)
    tool.regionDrawn.connect(drawn.append)
    for x, y in [(50, 60), (320, 80), (350, 300)]:
        click(tool, canvas, x, y)
    assert tool.finish() is None
    assert drawn == [] and len(failures) == 1 and "cannot make the folder" in failures[0]
    assert tool.points == [] and maptools.regions_layer() is None
    rect = RectangleRegionTool(canvas)
    rect.regionFailed.connect(failures.append)
    rect.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 10, 10))
    rect.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 110, 60))
    assert len(failures) == 2


def test_search_region_prefers_the_selected_polygon(canvas, qgis_iface):
    from geobridge_qgis.core.tiling import Region

    assert search_region(qgis_iface) is None
    tool = RectangleRegionTool(canvas)
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 10, 10))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 110, 60))
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 200, 200))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 220, 240))
    _, features = regions()
    last = features[-1].geometry()

    fields = QgsVectorLayer("Polygon?crs=EPSG:4326&field=name:string", "fields", "memory")
    squares = []
    for i, lon in enumerate((15.0, 15.01, 15.02)):
        f = QgsFeature(fields.fields())
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(lon, 49.6, lon + 0.005, 49.605)))
        f["name"] = f"field {i}"
        squares.append(f)
    fields.dataProvider().addFeatures(squares)
    points = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayers([fields, points])
    ids = sorted(f.id() for f in fields.getFeatures())

    # No selection: the last drawn region, in the project CRS.
    qgis_iface.setActiveLayer(fields)
    wkt, crs = search_region(qgis_iface)
    assert crs == "EPSG:32633"
    assert QgsGeometry.fromWkt(wkt).area() == pytest.approx(last.area())
    assert QgsGeometry.fromWkt(wkt).area() == pytest.approx(
        20 * 40 * canvas.mapUnitsPerPixel() ** 2
    )

    # One selected polygon of the active layer wins, in that layer's CRS.
    fields.selectByIds([ids[1]])
    wkt, crs = search_region(qgis_iface)
    assert crs == "EPSG:4326"
    assert QgsGeometry.fromWkt(wkt).equals(squares[1].geometry())
    region = Region.from_wkt(wkt, crs)  # what the locate task builds
    assert region.geometry.GetArea() == pytest.approx(0.005 * 0.005)
    assert region.crs.to_epsg() == 4326

    # Two selected: their union.
    fields.selectByIds([ids[0], ids[2]])
    wkt, _ = search_region(qgis_iface)
    assert QgsGeometry.fromWkt(wkt).area() == pytest.approx(2 * 0.005 * 0.005)
    assert QgsGeometry.fromWkt(wkt).isMultipart()

    # A selection in another (non-polygon, or not active) layer does not count.
    qgis_iface.setActiveLayer(points)
    wkt, crs = search_region(qgis_iface)
    assert crs == "EPSG:32633" and QgsGeometry.fromWkt(wkt).area() == pytest.approx(last.area())


def test_dock_passes_the_search_region_to_the_locate_task(
    canvas, qgis_iface, monkeypatch, tmp_path
):
    from geobridge_qgis import settings as plugin_settings
    from geobridge_qgis.gui import dock as dock_module
    from geobridge_qgis.gui import jobs

    started = []
    monkeypatch.setattr(jobs, "run_task", lambda task, *keep: started.append(task))
    plugin_settings.clear_dock()
    d = dock_module.GeoBridgeDock(qgis_iface, qgis_iface.mainWindow())
    try:
        d.bundle_edit.setFilePath(str(tmp_path / "bundle"))
        d.index_edit.setFilePath(str(tmp_path / "index"))
        d.text_edit.setPlainText("a church beside a roundabout")
        d.use_region.setChecked(True)
        assert not d.locate()  # no region yet: said so, nothing started
        assert started == [] and "search region" in d.status.text()

        tool = RectangleRegionTool(canvas)
        tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, 10, 10))
        tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, 110, 60))
        assert d.locate()
        (task,) = started
        wkt, crs = task.request.region
        assert crs == "EPSG:32633"
        assert QgsGeometry.fromWkt(wkt).area() == pytest.approx(
            100 * 50 * canvas.mapUnitsPerPixel() ** 2
        )
        d.jobs.shutdown()  # the task never ran: forget it
        d.use_region.setChecked(False)
        assert d.locate()
        assert started[-1].request.region is None
    finally:
        d.jobs.shutdown()
        d.deleteLater()
        plugin_settings.clear_dock()


def test_basemap_action_adds_the_xyz_layer_of_the_settings_at_the_bottom(
    canvas, qgis_iface, clean_settings
):
    from geobridge_qgis.plugin import GeoBridgePlugin

    url = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"
    QgsSettings().setValue("geobridge/basemap_url", url)
    QgsSettings().setValue("geobridge/basemap_name", "Local imagery")
    project = QgsProject.instance()
    roads = QgsVectorLayer("LineString?crs=EPSG:32633", "roads", "memory")
    project.addMapLayer(roads)
    plugin = GeoBridgePlugin(qgis_iface)
    plugin.initGui()
    try:
        (action,) = qgis_iface.mainWindow().findChildren(QAction, "GeoBridgeAddBasemap")
        assert action.text() == "Add satellite basemap"
        action.trigger()
        added = [x for x in project.mapLayers().values() if x.id() != roads.id()]
        assert len(added) == 1
        basemap = added[0]
        assert basemap.name() == "Local imagery" and basemap.providerType() == "wms"
        assert basemap.isValid()
        assert url in unquote(basemap.source()) and "type=xyz" in basemap.source()
        tree = [node.layerId() for node in project.layerTreeRoot().findLayers()]
        assert tree == [roads.id(), basemap.id()]  # the bottom: drawn under everything

        # Without the settings: Esri World Imagery.
        QgsSettings().remove("geobridge/basemap_url")
        QgsSettings().remove("geobridge/basemap_name")
        action.trigger()
        tree = project.layerTreeRoot().findLayers()
        assert tree[-1].layer().name() == "Esri World Imagery"
        assert settings.DEFAULT_BASEMAP_URL in unquote(tree[-1].layer().source())
        assert settings.DEFAULT_BASEMAP_URL.startswith("https://server.arcgisonline.com/")
    finally:
        plugin.unload()


def test_draw_actions_set_the_region_tools(canvas, qgis_iface):
    from geobridge_qgis.plugin import GeoBridgePlugin

    plugin = GeoBridgePlugin(qgis_iface)
    plugin.initGui()
    try:
        main = qgis_iface.mainWindow()
        # This plugin's own actions (an earlier test's unloaded plugin may still have actions
        # waiting for deleteLater under the same names).
        rect_action, poly_action = plugin.rectangle_action, plugin.polygon_action
        assert rect_action in main.findChildren(QAction, "GeoBridgeDrawRectangle")
        assert poly_action in main.findChildren(QAction, "GeoBridgeDrawPolygon")
        rect_action.trigger()
        assert isinstance(canvas.mapTool(), RectangleRegionTool)
        assert rect_action.isChecked()
        poly_action.trigger()
        assert isinstance(canvas.mapTool(), PolygonRegionTool)
        assert poly_action.isChecked() and not rect_action.isChecked()
        tool = canvas.mapTool()
        for x, y in [(10, 10), (300, 20), (150, 300)]:
            click(tool, canvas, x, y)
        click(tool, canvas, 0, 0, Qt.MouseButton.RightButton)
        _, (f,) = regions()
        assert f.geometry().area() == pytest.approx(
            shoelace([to_map(canvas, x, y) for x, y in [(10, 10), (300, 20), (150, 300)]])
        )
    finally:
        plugin.unload()
    assert not isinstance(canvas.mapTool(), (RectangleRegionTool, PolygonRegionTool))


def test_settings_round_trip_with_defaults(clean_settings):
    assert settings.bundles_folder() == ""
    assert settings.index_cache_folder() == ""
    assert settings.provider_names() == ["tensorrt", "cuda", "cpu"]
    assert settings.batch_size() == 32
    assert settings.chip_sizes() == (100.0, 150.0)
    assert settings.basemap_url() == settings.DEFAULT_BASEMAP_URL
    assert settings.basemap_name() == "Esri World Imagery"

    settings.set_bundles_folder("/data/bundles")
    settings.set_index_cache_folder("/data/indexes")
    settings.set_providers(["cuda", "cpu"])
    settings.set_batch_size(8)
    settings.set_chip_sizes([60, 120.5])
    assert QgsSettings().value("geobridge/providers") == "cuda,cpu"
    assert settings.bundles_folder() == "/data/bundles"
    assert settings.index_cache_folder() == "/data/indexes"
    assert settings.providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.batch_size() == 8
    assert settings.chip_sizes() == (60.0, 120.5)

    # What a hand-edited profile may hold falls back to the defaults.
    QgsSettings().setValue("geobridge/batch_size", "many")
    QgsSettings().setValue("geobridge/chip_sizes", "100,-5")
    QgsSettings().setValue("geobridge/providers", " , ")
    assert settings.batch_size() == 32
    assert settings.chip_sizes() == (100.0, 150.0)
    assert settings.provider_names() == ["tensorrt", "cuda", "cpu"]
    with pytest.raises(ValueError):
        settings.set_batch_size(0)
    assert math.isclose(settings.chip_sizes()[0], 100.0)


def test_locate_searches_only_the_region(tiny_bundle, tiny_index, tmp_path):
    """The (WKT, CRS) the dock passes reaches the engine: every candidate lies in it."""
    from pyproj import Transformer

    from geobridge_qgis.core.service import LocateRequest, locate

    # The north-west 250 m x 250 m of the 600 m x 600 m raster, given in degrees.
    xmin, ymax = 500010.0, 5500990.0
    box = [(xmin, ymax), (xmin + 250, ymax), (xmin + 250, ymax - 250), (xmin, ymax - 250)]
    to_deg = Transformer.from_crs(32633, 4326, always_xy=True)
    ring = [to_deg.transform(x, y) for x, y in box + box[:1]]
    wkt = "POLYGON((" + ", ".join(f"{lon:.9f} {lat:.9f}" for lon, lat in ring) + "))"

    def inside(c) -> bool:
        return xmin - 1 <= c.x <= xmin + 251 and ymax - 251 <= c.y <= ymax + 1

    text = "a church beside a roundabout"
    everywhere = locate(LocateRequest(tiny_bundle, tiny_index, text=text, top_k=10))
    assert not all(inside(c) for c in everywhere.queries[0].candidates)
    outcome = locate(
        LocateRequest(tiny_bundle, tiny_index, text=text, top_k=10, region=(wkt, "EPSG:4326"))
    )
    candidates = outcome.queries[0].candidates
    assert candidates and all(inside(c) for c in candidates)


def test_regions_are_saved_with_the_project(canvas, tmp_path):
    """A drawn region comes back when the project is opened again (not a memory layer)."""
    project = QgsProject.instance()
    square = QgsGeometry.fromWkt(
        "POLYGON((500100 5500100, 500300 5500100, 500300 5500300, 500100 5500300, 500100 5500100))"
    )
    maptools.add_region(square, UTM, name="quarry")
    layer, _ = regions()
    assert layer.providerType() == "ogr" and layer.source().split("|")[0].endswith(".gpkg")
    path = tmp_path / "survey.qgz"
    assert project.write(str(path))
    project.clear()
    assert maptools.regions_layer() is None
    assert project.read(str(path))
    layer, features = regions()
    assert [f["name"] for f in features] == ["quarry"]
    assert features[0].geometry().area() == pytest.approx(200 * 200)

    # Once the project has a file, a new regions layer goes beside it.
    project.removeMapLayer(layer.id())
    maptools.add_region(square, UTM, name="again")
    layer, _ = regions()
    assert layer.source().split("|")[0] == str(tmp_path / "survey-geobridge-regions.gpkg")
