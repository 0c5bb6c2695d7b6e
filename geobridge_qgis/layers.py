"""Result layers in the project: candidates, footprints and heat maps, styled and grouped.

Styles live in resources/styles/*.qml (the renderer, labels and ramp an analyst can edit in
QGIS and save back). Their class breaks and ramp limits are refitted to each result: cosine
scores of one model on one gallery span a narrow band that differs between models, so fixed
breaks would paint every candidate the same colour. Main thread only (touches the project).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProject,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)

GROUP = "GeoBridge results"
STYLES = Path(__file__).resolve().parent / "resources" / "styles"
KINDS = ("candidates", "footprints", "heatmap")  # drawing order, top first
KIND_PROPERTY = "geobridge/kind"


@dataclass
class ResultLayers:
    candidates: QgsVectorLayer | None = None
    footprints: QgsVectorLayer | None = None
    heatmaps: list[QgsRasterLayer] = field(default_factory=list)

    def all(self) -> list[QgsMapLayer]:
        return [x for x in (self.candidates, self.footprints, *self.heatmaps) if x is not None]


def style_path(kind: str) -> Path:
    return STYLES / f"{kind}.qml"


def results_group(project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """The "GeoBridge results" group at the top of the layer tree (made when missing)."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    group = root.findGroup(GROUP)
    if group is None:
        group = root.insertGroup(0, GROUP)
    return group


def place_in_group(layer: QgsMapLayer, kind: str, project: QgsProject | None = None) -> None:
    """Add `layer` to the results group (moving it there if the project already has it).

    Points above polygons above heat maps, whatever order layers arrive in (Processing loads
    them sorted by URI), and newest first within each kind: a layer goes just before the first
    layer of its own kind or of a kind drawn below it.
    """
    project = project or QgsProject.instance()
    layer.setCustomProperty(KIND_PROPERTY, kind)
    group = results_group(project)
    rank = KINDS.index(kind) if kind in KINDS else len(KINDS)
    position = len(group.children())
    for i, child in enumerate(group.children()):
        other = child.layer() if hasattr(child, "layer") else None
        other_kind = other.customProperty(KIND_PROPERTY) if other is not None else None
        if other is not layer and other_kind in KINDS and KINDS.index(other_kind) >= rank:
            position = i
            break
    old = project.layerTreeRoot().findLayer(layer.id())
    if project.mapLayer(layer.id()) is None:
        project.addMapLayer(layer, False)
    group.insertLayer(position, layer)
    if old is not None and old.parent() is not None:
        old.parent().removeChildNode(old)


def style_layer(layer: QgsMapLayer, kind: str) -> bool:
    """Apply resources/styles/<kind>.qml, then fit class breaks / ramp limits to the data."""
    _message, ok = layer.loadNamedStyle(str(style_path(kind)))
    if not ok:
        return False
    if kind == "candidates" and isinstance(layer, QgsVectorLayer):
        renderer = layer.renderer()
        if isinstance(renderer, QgsGraduatedSymbolRenderer) and layer.featureCount() > 1:
            renderer.updateClasses(layer, max(1, len(renderer.ranges())))
    elif kind == "heatmap" and isinstance(layer, QgsRasterLayer):
        _fit_ramp(layer)
    layer.triggerRepaint()
    return True


def _fit_ramp(layer: QgsRasterLayer) -> None:
    renderer = layer.renderer()
    if not isinstance(renderer, QgsSingleBandPseudoColorRenderer):
        return
    stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    lo, hi = stats.minimumValue, stats.maximumValue
    if not (hi > lo):
        hi = lo + 1e-6
    # The ramp's stops (transparent at the low end) come from the QML; only its limits move.
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    shader_fn = renderer.shader().rasterShaderFunction()
    shader_fn.setMinimumValue(lo)
    shader_fn.setMaximumValue(hi)
    shader_fn.classifyColorRamp()


def heatmap_uri(gpkg: Path | str, query_id: int) -> str:
    return f"GPKG:{gpkg}:heatmap_{query_id}"


def heatmap_tables(gpkg: Path | str) -> list[int]:
    """Query ids that have a heat map in a results GeoPackage (from its gpkg_contents)."""
    try:
        con = sqlite3.connect(f"file:{Path(gpkg).resolve()}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type = '2d-gridded-coverage'"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    names = [r[0] for r in rows]
    return sorted(int(n[8:]) for n in names if n.startswith("heatmap_") and n[8:].isdigit())


def heatmap_layers(
    gpkg: Path | str, label: str, query_ids: list[int] | None = None
) -> list[QgsRasterLayer]:
    """The heat maps of a results GeoPackage as raster layers (not yet in a project)."""
    tables = heatmap_tables(gpkg)
    # Approximate (HNSW) indexes give no heat map: only the queries that have one.
    ids = [q for q in query_ids if q in tables] if query_ids is not None else tables
    layers = []
    for qid in ids:
        name = f"{label} heat map" + (f" {qid}" if len(ids) > 1 else "")
        raster = QgsRasterLayer(heatmap_uri(gpkg, qid), name, "gdal")
        if raster.isValid():
            layers.append(raster)
    return layers


def add_heatmaps(
    gpkg: Path | str,
    project: QgsProject | None = None,
    label: str | None = None,
    query_ids: list[int] | None = None,
) -> list[QgsRasterLayer]:
    """Load, style and group a results GeoPackage's heat maps."""
    project = project or QgsProject.instance()
    layers = heatmap_layers(gpkg, label or Path(gpkg).stem, query_ids)
    for layer in layers:
        style_layer(layer, "heatmap")
        place_in_group(layer, "heatmap", project)
    return layers


def add_result_layers(
    gpkg: Path | str,
    project: QgsProject | None = None,
    label: str | None = None,
    query_ids: list[int] | None = None,
) -> ResultLayers:
    """Load a results GeoPackage's candidates, footprints and heat maps into the results
    group, styled. Heat maps go below the vectors so the points stay visible."""
    project = project or QgsProject.instance()
    gpkg = Path(gpkg)
    label = label or gpkg.stem
    out = ResultLayers()
    for kind in ("candidates", "footprints"):
        layer = QgsVectorLayer(f"{gpkg}|layername={kind}", f"{label} {kind}", "ogr")
        setattr(out, kind, layer if layer.isValid() else None)
    out.heatmaps = heatmap_layers(gpkg, label, query_ids)
    for layer, kind in [
        (out.candidates, "candidates"),
        (out.footprints, "footprints"),
        *((h, "heatmap") for h in out.heatmaps),
    ]:
        if layer is None:
            continue
        style_layer(layer, kind)
        place_in_group(layer, kind, project)
    return out
