"""Result layers in the project: candidates, footprints and heat maps, styled and grouped.

Styles live in resources/styles/*.qml (the renderer, labels and ramp an analyst can edit in
QGIS and save back). Candidates are coloured by rank (the order re-ranking settled on), so the
best is always the strongest colour. The heat map's ramp limits are refitted to each result:
cosine scores of one model on one gallery span a narrow band that differs between models.

Every run the dock makes is kept in the project's results store (core.store): one GeoPackage
beside the project file (`<project>-geobridge-results.gpkg`), or in the QGIS profile folder
while the project is unsaved, with the styles in its `layer_styles` table. Each run is a group
of its own in "GeoBridge results", newest on top; a new run collapses and hides the earlier
ones. Main thread only (touches the project).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMapLayerStyle,
    QgsMessageLog,
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
    """Apply resources/styles/<kind>.qml, then fit a heat map's ramp limits to its values."""
    _message, ok = layer.loadNamedStyle(str(style_path(kind)))
    if not ok:
        return False
    if kind == "heatmap" and isinstance(layer, QgsRasterLayer):
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


# ---------------------------------------------------------------- the project's results store

RUN_PROPERTY = "geobridge/run"
STORE_ENTRY = ("geobridge", "results_store")  # project entry: an unsaved project's store


def project_store(project: QgsProject | None = None) -> Path:
    """The results GeoPackage of `project`: beside its file when it has been saved, else one
    in the QGIS profile folder. The choice is remembered in the project, so that all its runs
    stay in one file (saving the project later does not split them)."""
    project = project or QgsProject.instance()
    remembered, _ok = project.readEntry(*STORE_ENTRY, "")
    if remembered:
        return Path(project.readPath(remembered))
    path = None
    if project.absoluteFilePath():
        path = Path(project.absolutePath()) / f"{project.baseName()}-geobridge-results.gpkg"
        if not os.access(path.parent, os.W_OK):
            path = None
    if path is None:
        folder = Path(QgsApplication.qgisSettingsDirPath()) / "geobridge"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while (path := folder / f"results-{stamp}{f'-{n}' if n else ''}.gpkg").exists():
            n += 1
    project.writeEntry(*STORE_ENTRY, project.writePath(str(path)))
    return path


def _run_group_name(parent: QgsLayerTreeGroup, run: Any) -> str:
    name = f"{run.label} {run.time}"
    taken = {child.name() for child in parent.children()}
    return name if name not in taken else f"{name} #{run.run_id}"


def _apply_stored_or_default(layer: QgsMapLayer, kind: str, gpkg: Path, table: str) -> None:
    """The style stored for `table` in the GeoPackage, else the plugin's, stored there now."""
    from .core import store

    qml = store.style_of(gpkg, table)
    if qml:
        if isinstance(layer, QgsRasterLayer):  # QGIS 3.22 loads stored styles of vectors only
            QgsMapLayerStyle(qml).writeToLayer(layer)
        return
    style_layer(layer, kind)
    if isinstance(layer, QgsVectorLayer):
        error = layer.saveStyleToDatabase("GeoBridge", f"GeoBridge {kind}", True, "")
        if error:  # the layer is still styled in the project; only the GeoPackage lacks it
            QgsMessageLog.logMessage(
                f"{gpkg}: cannot store the style of {table}: {error}", "GeoBridge", Qgis.Warning
            )
    else:
        saved = QgsMapLayerStyle()
        saved.readFromLayer(layer)
        store.save_style(gpkg, table, saved.xmlData())


def add_run_layers(gpkg: Path | str, run: Any, project: QgsProject | None = None) -> ResultLayers:
    """A run of a results store (or of a GeoPackage exported from one) as a group of styled
    layers on top of "GeoBridge results"; the groups of earlier runs are collapsed and
    hidden. A style stored in the GeoPackage wins over the plugin's own."""
    project = project or QgsProject.instance()
    gpkg = Path(gpkg)
    parent = results_group(project)
    for child in parent.children():
        if isinstance(child, QgsLayerTreeGroup) and child.customProperty(RUN_PROPERTY):
            child.setExpanded(False)
            child.setItemVisibilityChecked(False)
    name = _run_group_name(parent, run)
    out = ResultLayers()
    for kind in ("candidates", "footprints"):
        table = run.table(kind)
        layer = QgsVectorLayer(f"{gpkg}|layername={table}", f"{name} {kind}", "ogr")
        if table and layer.isValid():
            setattr(out, kind, layer)
    heat_tables = []
    for table in run.heatmaps:
        suffix = table.split("_", 2)[2] if table.count("_") == 2 else ""
        raster = QgsRasterLayer(
            f"GPKG:{gpkg}:{table}", f"{name} heat map{f' {suffix}' if suffix else ''}", "gdal"
        )
        if raster.isValid():
            out.heatmaps.append(raster)
            heat_tables.append(table)
    group = parent.insertGroup(0, name)
    group.setCustomProperty(RUN_PROPERTY, str(run.run_id))
    for layer, kind, table in [
        (out.candidates, "candidates", run.table("candidates")),
        (out.footprints, "footprints", run.table("footprints")),
        *((h, "heatmap", t) for h, t in zip(out.heatmaps, heat_tables, strict=True)),
    ]:
        if layer is None:
            continue
        _apply_stored_or_default(layer, kind, gpkg, table)
        layer.setCustomProperty(KIND_PROPERTY, kind)
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return out


def store_runs(project: QgsProject | None = None) -> list[Any]:
    """The runs kept for `project` (core.store.Run), oldest first."""
    from .core.store import runs

    return runs(project_store(project))


def export_runs(run_ids: list[int], path: Path | str, project: QgsProject | None = None) -> Path:
    """Copy the chosen runs of the project's store, styles included, to a GeoPackage."""
    from .core.store import export_runs as export

    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        path = path.with_suffix(".gpkg")
    return export(project_store(project), run_ids, path)
