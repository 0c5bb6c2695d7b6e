"""Search regions drawn on the map, and the satellite basemap.

Two map tools draw a region to search: `RectangleRegionTool` (press, drag, release) and
`PolygonRegionTool` (left clicks add vertices, a right click finishes, Esc cancels, Backspace
removes the last vertex). Each finished region becomes a feature of the layer "GeoBridge
search regions" (made on first use, in the project CRS, found again by its custom property, so
renaming it does not lose it). The layer is a GeoPackage, not a memory layer, so that regions
are saved with the project (QGIS 3.22 does not save memory layers): `<project>-geobridge-
regions.gpkg` beside a saved project, else `geobridge/regions-<time>.gpkg` in the QGIS profile
folder (the project then records that path).

`search_region` says what to search: the selected polygons of the active layer, else the last
drawn region. `add_basemap` adds the XYZ imagery layer named in the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsMapLayer,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import QDateTime, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

from .. import settings
from ..compat import field_type
from ..core.errors import UserError

REGIONS_LAYER_NAME = "GeoBridge search regions"
ROLE_PROPERTY = "geobridge/role"
REGIONS_ROLE = "search_regions"
BASEMAP_ROLE = "basemap"


# ---------------------------------------------------------------- the regions layer


def regions_layer(project: QgsProject | None = None, create: bool = False) -> QgsVectorLayer | None:
    """The project's search-regions layer (by custom property); made when `create`."""
    project = project or QgsProject.instance()
    for layer in project.mapLayers().values():
        if layer.customProperty(ROLE_PROPERTY) == REGIONS_ROLE and isinstance(
            layer, QgsVectorLayer
        ):
            return layer
    if not create:
        return None
    crs = project.crs()
    crs = crs if crs.isValid() else QgsCoordinateReferenceSystem("EPSG:4326")
    layer = _regions_gpkg(regions_path(project), crs, project)
    layer.setCustomProperty(ROLE_PROPERTY, REGIONS_ROLE)
    symbol = QgsFillSymbol.createSimple(
        {
            "color": "255,140,0,40",
            "outline_color": "255,140,0,255",
            "outline_width": "0.6",
        }
    )
    layer.renderer().setSymbol(symbol)
    project.addMapLayer(layer)
    return layer


def regions_path(project: QgsProject) -> Path:
    """Where a project's regions GeoPackage goes (see the module docstring)."""
    if project.fileName():
        return Path(project.absolutePath()) / f"{project.baseName()}-geobridge-regions.gpkg"
    folder = Path(QgsApplication.qgisSettingsDirPath()) / "geobridge"
    stamp = QDateTime.currentDateTime().toString("yyyyMMdd-HHmmss")
    n = 0
    while (path := folder / f"regions-{stamp}{f'-{n}' if n else ''}.gpkg").exists():
        n += 1
    return path


def _regions_gpkg(
    path: Path, crs: QgsCoordinateReferenceSystem, project: QgsProject
) -> QgsVectorLayer:
    """The regions layer of the GeoPackage at `path`, made when it is not there (a region
    file left by an earlier session of this project is opened again, not overwritten)."""
    uri = f"{path}|layername=search_regions"
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{path.parent}: cannot make the folder ({e.strerror or e})") from None
        fields = QgsFields()
        fields.append(QgsField("name", field_type("String"), len=80))
        fields.append(QgsField("created", field_type("DateTime")))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "search_regions"
        writer = QgsVectorFileWriter.create(
            str(path), fields, QgsWkbTypes.Type.Polygon, crs, project.transformContext(), options
        )
        if writer.hasError():
            raise UserError(f"{path}: cannot create the regions layer: {writer.errorMessage()}")
        del writer  # flushes and closes the file
    layer = QgsVectorLayer(uri, REGIONS_LAYER_NAME, "ogr")
    if not layer.isValid():
        raise UserError(f"{path}: cannot open the regions layer")
    return layer


def add_region(
    geometry: QgsGeometry,
    crs: QgsCoordinateReferenceSystem,
    kind: str = "region",
    name: str | None = None,
    project: QgsProject | None = None,
) -> QgsFeature:
    """Add a polygon given in `crs` to the regions layer (in the layer's CRS); the feature."""
    project = project or QgsProject.instance()
    layer = regions_layer(project, create=True)
    geometry = QgsGeometry(geometry)
    if crs.isValid() and crs != layer.crs():
        geometry.transform(QgsCoordinateTransform(crs, layer.crs(), project))
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature["name"] = name or f"{kind} {layer.featureCount() + 1}"
    feature["created"] = QDateTime.currentDateTime()
    ok, added = layer.dataProvider().addFeatures([feature])
    if not ok:
        raise UserError(f"cannot add the region to {layer.name()}")
    layer.updateExtents()
    layer.triggerRepaint()
    return added[0]


def _crs_text(crs: QgsCoordinateReferenceSystem) -> str:
    return crs.authid() or crs.toWkt()


def search_region(iface: Any, project: QgsProject | None = None) -> tuple[str, str] | None:
    """(WKT, CRS) of the region to search, or None: the selected polygon(s) of the active
    vector layer when there are any, else the last drawn region. The CRS is its authid
    ("EPSG:32633"), or its WKT for a CRS without one."""
    active = iface.activeLayer() if iface is not None else None
    if (
        isinstance(active, QgsVectorLayer)
        and active.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry
        and active.selectedFeatureCount() > 0
    ):
        geoms = [f.geometry() for f in active.selectedFeatures() if f.hasGeometry()]
        if geoms:
            union = QgsGeometry.unaryUnion(geoms) if len(geoms) > 1 else geoms[0]
            if not union.isEmpty():
                return union.asWkt(), _crs_text(active.crs())
    layer = regions_layer(project)
    if layer is None:
        return None
    last = None
    for feature in layer.getFeatures():
        if feature.hasGeometry() and (last is None or feature.id() > last.id()):
            last = feature
    if last is None:
        return None
    return last.geometry().asWkt(), _crs_text(layer.crs())


# ---------------------------------------------------------------- map tools


def _style(band: QgsRubberBand) -> QgsRubberBand:
    band.setColor(QColor(255, 140, 0, 220))
    band.setFillColor(QColor(255, 140, 0, 50))
    band.setWidth(2)
    return band


def _add_or_report(tool: Any, geometry: QgsGeometry, kind: str) -> QgsFeature | None:
    """Add a drawn region; a region that cannot be stored (an unwritable project folder, say)
    is the user's to fix: `regionFailed` carries the reason, and the tool stays usable."""
    crs = tool.canvas().mapSettings().destinationCrs()
    try:
        feature = add_region(geometry, crs, kind)
    except UserError as e:
        tool.regionFailed.emit(str(e))
        return None
    tool.regionDrawn.emit(feature)
    return feature


class RectangleRegionTool(QgsMapToolExtent):
    """Press, drag and release: the rectangle becomes a search region."""

    regionDrawn = pyqtSignal(object)  # the QgsFeature added
    regionFailed = pyqtSignal(str)  # why a drawn region could not be stored

    def __init__(self, canvas: QgsMapCanvas):
        super().__init__(canvas)
        self.extentChanged.connect(self._drawn)

    def _drawn(self, rect: Any) -> None:
        self.clearRubberBand()
        if rect.isNull() or rect.width() <= 0 or rect.height() <= 0:
            return  # a click without a drag
        _add_or_report(self, QgsGeometry.fromRect(rect), "rectangle")


class PolygonRegionTool(QgsMapTool):
    """Left clicks add vertices, a right click finishes (three vertices at least), Esc
    cancels, Backspace removes the last vertex."""

    regionDrawn = pyqtSignal(object)  # the QgsFeature added
    regionFailed = pyqtSignal(str)  # why a drawn region could not be stored

    def __init__(self, canvas: QgsMapCanvas):
        super().__init__(canvas)
        self.points: list[QgsPointXY] = []
        self.band: QgsRubberBand | None = None
        self.setCursor(Qt.CursorShape.CrossCursor)

    def _show(self, extra: QgsPointXY | None = None) -> None:
        if self.band is None:
            self.band = _style(
                QgsRubberBand(self.canvas(), QgsWkbTypes.GeometryType.PolygonGeometry)
            )
        points = self.points + ([extra] if extra is not None else [])
        self.band.setToGeometry(QgsGeometry.fromPolygonXY([points]) if points else QgsGeometry())

    def reset(self) -> None:
        self.points = []
        if self.band is not None:
            self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def canvasMoveEvent(self, e: QgsMapMouseEvent) -> None:
        if self.points:
            self._show(self.toMapCoordinates(e.pos()))

    def canvasReleaseEvent(self, e: QgsMapMouseEvent) -> None:
        if e.button() == Qt.MouseButton.LeftButton:
            self.points.append(self.toMapCoordinates(e.pos()))
            self._show()
        elif e.button() == Qt.MouseButton.RightButton:
            self.finish()

    def keyPressEvent(self, e: Any) -> None:
        if e.key() == Qt.Key.Key_Escape:
            self.reset()
            e.accept()
        elif e.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete) and self.points:
            self.points.pop()
            self._show()
            e.accept()
        else:
            e.ignore()

    def finish(self) -> QgsFeature | None:
        """Close the polygon: add it as a region (None with fewer than three vertices, or
        when it cannot be stored)."""
        points = self.points
        self.reset()
        if len(points) < 3:
            return None
        geometry = QgsGeometry.fromPolygonXY([points])
        if geometry.area() <= 0:
            return None
        return _add_or_report(self, geometry, "polygon")

    def deactivate(self) -> None:
        self.reset()
        super().deactivate()

    def remove_band(self) -> None:
        if self.band is not None:
            self.canvas().scene().removeItem(self.band)
            self.band = None


# ---------------------------------------------------------------- basemap


def basemap_source(url: str, zmin: int = 0, zmax: int = 19) -> str:
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", url)
    uri.setParam("zmin", str(zmin))
    uri.setParam("zmax", str(zmax))
    return bytes(uri.encodedUri()).decode()


def add_basemap(project: QgsProject | None = None) -> QgsMapLayer:
    """Add the XYZ imagery layer of the settings at the bottom of the layer tree. Nothing is
    fetched here: QGIS asks for tiles when it draws the layer."""
    project = project or QgsProject.instance()
    layer = QgsRasterLayer(basemap_source(settings.basemap_url()), settings.basemap_name(), "wms")
    if not layer.isValid():
        raise UserError(f"{settings.basemap_url()}: not an XYZ tile URL QGIS can open")
    layer.setCustomProperty(ROLE_PROPERTY, BASEMAP_ROLE)
    project.addMapLayer(layer, False)
    project.layerTreeRoot().addLayer(layer)  # appended: the bottom of the tree
    return layer
