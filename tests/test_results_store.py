"""Every result kept and styled: each run in the project's results GeoPackage, its styles in
the `layer_styles` table, surviving a project closed and opened again; Export takes the runs
the analyst picks, styles included."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import ogr
from qgis.core import QgsApplication, QgsLayerTreeGroup, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt
from test_gui import wait_for

from geobridge_qgis.core import store
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.service import LocateRequest, locate

TEXTS = ("a field", "a road between fields", "red roofs")


def styles_in(gpkg: Path) -> dict[str, str]:
    """{table: style QML} of a GeoPackage's layer_styles table, read with OGR."""
    ds = ogr.Open(str(gpkg))
    layer = ds.GetLayerByName("layer_styles")
    return {f.GetField("f_table_name"): f.GetField("styleQML") for f in layer}


def test_store_keeps_each_run_as_its_own_tables(tiny_bundle, tiny_index, tmp_path):
    path = tmp_path / "project-geobridge-results.gpkg"
    for i, text in enumerate(TEXTS[:2]):
        out = tmp_path / f"r{i}.gpkg"
        locate(LocateRequest(tiny_bundle, tiny_index, text=text, top_k=3, out=out))
        run = store.import_run(path, out, f'"{text}"')
        assert run.run_id == i + 1
        assert run.tables == [f"candidates_{i + 1}", f"footprints_{i + 1}", f"query_{i + 1}",
                              f"heatmap_{i + 1}"]  # fmt: skip
    runs = store.runs(path)
    assert [(r.run_id, r.label, r.candidates) for r in runs] == [
        (1, '"a field"', 3),
        (2, '"a road between fields"', 3),
    ]
    ds = ogr.Open(str(path))
    assert ds.GetLayerByName("candidates_2").GetFeatureCount() == 3
    ds = None
    assert store.raster_tables(path) == ["heatmap_1", "heatmap_2"]

    store.save_style(path, "heatmap_2", "<qgis>heat</qgis>")
    store.save_style(path, "heatmap_2", "<qgis>newer</qgis>")  # replaces, never piles up
    assert store.style_of(path, "heatmap_2") == "<qgis>newer</qgis>"
    picked = store.export_runs(path, [2], tmp_path / "picked.gpkg")
    assert [r.run_id for r in store.runs(picked)] == [2]
    assert store.raster_tables(picked) == ["heatmap_2"]
    assert styles_in(picked) == {"heatmap_2": "<qgis>newer</qgis>"}
    with pytest.raises(UserError, match="no run 7"):
        store.export_runs(path, [2, 7], tmp_path / "bad.gpkg")
    assert not (tmp_path / "bad.gpkg").exists()


def run_locate(request: LocateRequest):
    from geobridge_qgis.tasks import LocateTask

    task = LocateTask(request, add_layers=True)
    done: list = []
    task.succeeded.connect(done.append)
    task.failed.connect(lambda e: done.append(RuntimeError(e)))
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: done, 120)
    assert not isinstance(done[0], Exception), done[0]
    return task


def test_three_runs_survive_closing_and_reopening_the_project_styled(
    qgis_new_project, tiny_bundle, tiny_index, tmp_path
):
    from geobridge_qgis.gui.run_export import RunExportDialog
    from geobridge_qgis.layers import RUN_PROPERTY, add_run_layers, project_store

    project = QgsProject.instance()
    project_file = tmp_path / "analysis.qgz"
    project.setFileName(str(project_file))
    for i, text in enumerate(TEXTS):
        task = run_locate(
            LocateRequest(tiny_bundle, tiny_index, text=text, top_k=3, out=tmp_path / f"{i}.gpkg")
        )
        assert task.run.run_id == i + 1 and task.layers.candidates.featureCount() == 3
    gpkg = tmp_path / "analysis-geobridge-results.gpkg"
    assert project_store() == gpkg and [r.run_id for r in store.runs(gpkg)] == [1, 2, 3]

    # One group per run, newest on top; the earlier ones collapsed and hidden.
    results = project.layerTreeRoot().findGroup("GeoBridge results")
    groups = [g for g in results.children() if isinstance(g, QgsLayerTreeGroup)]
    assert [g.customProperty(RUN_PROPERTY) for g in groups] == ["3", "2", "1"]
    assert groups[0].name().startswith('"red roofs" ') and groups[0].isVisible()
    assert [g.isExpanded() or g.itemVisibilityChecked() for g in groups[1:]] == [False, False]
    names = [layer.name() for layer in groups[0].findLayers()]
    assert len(set(names)) == 3 and names[0].endswith(" candidates")

    # The styles are in the GeoPackage itself (read with OGR, not through QGIS).
    styles = styles_in(gpkg)
    for run in (1, 2, 3):
        assert 'type="graduatedSymbol"' in styles[f"candidates_{run}"]
        assert 'attr="rank"' in styles[f"candidates_{run}"]
        assert "'refined' THEN 'solid'" in styles[f"footprints_{run}"]
        assert 'type="singlebandpseudocolor"' in styles[f"heatmap_{run}"]

    assert project.write()
    project.clear()
    assert not project.mapLayers()
    assert project.read(str(project_file))
    layers = {layer.name(): layer for layer in project.mapLayers().values()}
    assert len(layers) == 9 and all(layer.isValid() for layer in layers.values())
    kinds: dict[str, list[str]] = {}
    for name, layer in layers.items():
        renderer = layer.renderer()
        kinds.setdefault(name.rsplit(" ", 2)[-1], []).append(renderer.type())
        assert Path(layer.source().split("|")[0].replace("GPKG:", "").rsplit(":", 1)[0]) == gpkg
    assert kinds == {
        "candidates": ["graduatedSymbol"] * 3,
        "footprints": ["singleSymbol"] * 3,
        "map": ["singlebandpseudocolor"] * 3,  # "... heat map"
    }
    assert all(
        layer.renderer().classAttribute() == "rank"
        for layer in layers.values()
        if layer.name().endswith(" candidates")
    )

    # Export what the analyst ticks: the newest is ticked for them, they add the first.
    dialog = RunExportDialog()
    assert [dialog.runs.item(i).data(Qt.ItemDataRole.UserRole) for i in range(3)] == [3, 2, 1]
    assert dialog.chosen() == [3]
    dialog.runs.item(2).setCheckState(Qt.CheckState.Checked)
    dialog.file.setFilePath(str(tmp_path / "picked"))
    line, error = dialog.export()
    picked = tmp_path / "picked.gpkg"
    assert not error and line == f"Exported 2 run(s) to {picked}"
    assert [r.run_id for r in store.runs(picked)] == [1, 3]
    assert set(styles_in(picked)) == {f"{k}_{r}" for k in ("candidates", "footprints", "heatmap")
                                      for r in (1, 3)}  # fmt: skip
    # Opened from the export alone, QGIS styles a vector layer from layer_styles by itself,
    # and the plugin applies the stored heat map style (QGIS 3.22 does not for rasters).
    fresh = QgsVectorLayer(f"{picked}|layername=candidates_3", "fresh", "ogr")
    assert fresh.renderer().type() == "graduatedSymbol"
    plain = QgsVectorLayer(f"{tmp_path / '2.gpkg'}|layername=candidates", "plain", "ogr")
    assert plain.renderer().type() == "singleSymbol"  # the per-run file has no styles
    project.clear()
    run3 = store.runs(picked)[1]
    loaded = add_run_layers(picked, run3)
    assert loaded.candidates.renderer().type() == "graduatedSymbol"
    assert [h.renderer().type() for h in loaded.heatmaps] == ["singlebandpseudocolor"]
