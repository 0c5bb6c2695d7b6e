"""The dock in a narrow panel, its remembered options, its per-run layer groups and its error
messages, in a real (offscreen) QGIS with the tiny model.

"Cut" is measured as Qt lays the widgets out: a label, check box or button narrower than the
width its text needs, a word-wrapped label shorter than its text's lines, or a form wider than
the panel that shows it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from PIL import Image
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QWheelEvent
from qgis.PyQt.QtWidgets import QAbstractButton, QLabel, QWidget

from geobridge_qgis import settings


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        QgsApplication.processEvents()
        time.sleep(0.01)


def settle() -> None:
    for _ in range(5):
        QgsApplication.processEvents()


@pytest.fixture
def make_dock(qgis_iface, qgis_new_project):
    from geobridge_qgis.gui.dock import GeoBridgeDock

    settings.clear_dock()
    made = []

    def make(width: int = 380, height: int = 820) -> GeoBridgeDock:
        d = GeoBridgeDock(qgis_iface, qgis_iface.mainWindow())
        d.setFloating(True)
        d.resize(width, height)
        d.show()
        made.append(d)
        settle()
        return d

    yield make
    for d in made:
        d.shutdown()
        d.close()
        d.deleteLater()
    settings.clear_dock()


@pytest.fixture
def photo(utm_raster, tmp_path) -> Path:
    arr = gdal.Open(str(utm_raster)).ReadAsArray(300, 300, 240, 180)
    path = tmp_path / "photos" / "a rather long photo file name.jpg"
    path.parent.mkdir()
    Image.fromarray(np.moveaxis(arr, 0, -1)).save(path, quality=92)
    return path


def locate(dock, text: str | None = None) -> None:
    if text is not None:
        dock.text_edit.setPlainText(text)
    assert dock.locate(), dock.status.text()
    wait_for(lambda: not dock.is_busy())
    assert dock.outcome is not None, dock.status.text()


def cut_widgets(root: QWidget) -> list[str]:
    """Visible labels, check boxes and buttons under `root` that do not show all their text."""
    cut = []
    for widget in [root, *root.findChildren(QWidget)]:
        if not widget.isVisibleTo(root) or widget.width() <= 0:
            continue
        name = f"{type(widget).__name__} {widget.objectName() or ''}"
        if isinstance(widget, QLabel) and widget.text() and widget.pixmap() is None:
            if widget.wordWrap():
                need = widget.heightForWidth(widget.width())
                if widget.height() < need:
                    cut.append(f"{name} {widget.text()[:40]!r}: {widget.height()} < {need} px")
            elif widget.width() < widget.sizeHint().width():
                cut.append(f"{name} {widget.text()[:40]!r}: too narrow")
        elif isinstance(widget, QAbstractButton) and widget.text():
            need = widget.sizeHint().width()
            if widget.width() < need:
                cut.append(f"{name} {widget.text()!r}: {widget.width()} < {need} px")
    return cut


@pytest.mark.parametrize("width", [320, 450])
def test_nothing_is_cut_in_a_narrow_panel(make_dock, tiny_bundle, tiny_index, photo, width):
    settings.set_last_bundle(str(tiny_bundle))
    settings.set_last_index(str(tiny_index))
    dock = make_dock(width, 820)
    dock.photo_edit.setFilePath(str(photo))
    wait_for(lambda: dock.photo_meta is not None, 30)
    locate(dock)
    scroll = dock.tabs.widget(0)
    for expanded in (False, True):
        dock.form.model_box.setCollapsed(not expanded)
        dock.form.priors_box.setCollapsed(not expanded)
        dock.tabs.setCurrentIndex(0)
        settle()
        # The form is never wider than the panel (there is no horizontal scroll bar to reach
        # what would stick out).
        assert dock.form.width() <= scroll.viewport().width()
        assert dock.form.minimumSizeHint().width() <= scroll.viewport().width()
        assert cut_widgets(dock) == []
    dock.tabs.setCurrentIndex(1)
    dock.resize(width - 130, 820)  # columns are refitted on every resize, both ways
    settle()
    dock.resize(width, 820)
    settle()
    assert cut_widgets(dock) == []
    table = dock.table
    shown = [c for c in range(table.columnCount()) if not table.isColumnHidden(c)]
    assert {0, 1, 2, 3, 6} <= set(shown)  # rank, method, score, probability, distance
    assert sum(table.columnWidth(c) for c in shown) == table.viewport().width()
    if width >= 450:  # room for every shown column's text: none elided
        header = table.horizontalHeader()
        for c in shown:
            need = max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
            assert table.columnWidth(c) >= need, (c, table.columnWidth(c), need)
    for c in range(table.columnCount()):  # hidden or elided: the tooltip says it all
        tip = table.item(0, c).toolTip()
        assert "Rank: 1" in tip and "Score: " in tip and "Heading: " in tip


def test_locate_and_the_best_candidates_in_view_at_the_default_size(
    make_dock, tiny_bundle, tiny_index
):
    """1600 x 1000 screen: the dock docks at its size hint (380 x 820 once QGIS's toolbars
    are taken off); Locate and the first candidates show without scrolling."""
    from geobridge_qgis.gui.dock import DEFAULT_SIZE

    settings.set_last_bundle(str(tiny_bundle))
    settings.set_last_index(str(tiny_index))
    dock = make_dock(*DEFAULT_SIZE)
    assert (dock.sizeHint().width(), dock.sizeHint().height()) == DEFAULT_SIZE
    # A returning analyst: model and index ready, so their group is closed and says what
    # is loaded; the priors group is closed by default.
    assert dock.form.model_box.isCollapsed() and dock.form.priors_box.isCollapsed()
    assert "tiny" in dock.form.model_box.title() or "tiny" in dock.form.model_box.toolTip()
    # The whole query form fits: no vertical scrolling needed either.
    scroll = dock.tabs.widget(0)
    assert dock.form.sizeHint().height() <= scroll.viewport().height()
    locate(dock, "a green field")
    settle()
    assert dock.tabs.currentWidget() is dock.results
    for button in (dock.locate_button, dock.cancel_button):
        top_left = button.mapTo(dock, QPoint(0, 0))
        assert dock.rect().contains(top_left) and button.isVisible()
        assert top_left.y() + button.height() <= dock.height()
    viewport = dock.table.viewport().rect()
    for row in range(min(3, dock.table.rowCount())):
        assert viewport.contains(dock.table.visualItemRect(dock.table.item(row, 0)))


def test_spin_boxes_ignore_the_wheel_unless_focused(make_dock):
    dock = make_dock(320, 400)  # short: the form scrolls
    spin = dock.top_k
    scroll = dock.tabs.widget(0)
    start = spin.value()

    def wheel(widget) -> None:
        pos = QPointF(widget.width() / 2, widget.height() / 2)
        where = QPointF(widget.mapToGlobal(pos.toPoint()))
        event = QWheelEvent(pos, where, QPoint(0, 0), QPoint(0, -120),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                            Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
        QgsApplication.sendEvent(widget, event)

    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0  # there is something to scroll
    wheel(spin)
    assert spin.value() == start and not spin.hasFocus()
    assert bar.value() > 0  # the panel scrolled instead
    spin.setFocus()
    settle()
    assert spin.hasFocus()
    wheel(spin)  # a focused spin box is being used: the wheel is for it
    assert spin.value() == start - 1


def test_options_and_the_photo_folder_are_remembered(make_dock, tiny_bundle, tiny_index, photo):
    dock = make_dock()
    dock.bundle_edit.setFilePath(str(tiny_bundle))
    dock.index_edit.setFilePath(str(tiny_index))
    dock.top_k.setValue(7)
    dock.rotate.setChecked(False)
    dock.use_gps.setChecked(False)
    dock.rerank.setChecked(False)
    dock.gps_radius.setValue(40)
    dock.form.priors_box.setCollapsed(False)
    dock.photo_edit.setFilePath(str(photo))
    locate(dock)
    assert dock.outcome.queries[0].candidates and len(dock.outcome.queries[0].candidates) <= 7
    assert settings.photo_folder() == str(photo.parent)
    assert settings.last_bundle() == str(tiny_bundle)
    assert settings.last_index() == str(tiny_index)
    assert settings.priors_expanded()

    again = make_dock()
    assert again.bundle_edit.filePath() == str(tiny_bundle)
    assert again.index_edit.filePath() == str(tiny_index)
    options = (again.top_k.value(), again.rotate.isChecked(), again.use_gps.isChecked(),
               again.rerank.isChecked(), again.gps_radius.value())  # fmt: skip
    assert options == (7, False, False, False, 40)
    assert again.use_altitude.isChecked() and again.use_heading.isChecked()
    assert not again.form.priors_box.isCollapsed()
    # The photo dialog opens where the last photo came from.
    assert again.photo_edit.defaultRoot() == str(photo.parent)


def test_each_run_has_its_own_group_and_hides_the_earlier_ones(make_dock, tiny_bundle, tiny_index):
    settings.set_last_bundle(str(tiny_bundle))
    settings.set_last_index(str(tiny_index))
    dock = make_dock()
    locate(dock, "a church beside a roundabout with red-roofed houses to the north")
    first = dock.layers.all()
    locate(dock, "a field")
    results = QgsProject.instance().layerTreeRoot().findGroup("GeoBridge results")
    newest, older = results.children()
    assert newest.name().startswith('"a field" ') and newest.name() != older.name()
    assert older.name().startswith('"a church beside a…" ')
    assert newest.isVisible() and newest.isExpanded()
    assert not older.itemVisibilityChecked() and not older.isExpanded()
    assert [n.layer() for n in older.findLayers()] == first
    names = [n.layer().name() for g in (newest, older) for n in g.findLayers()]
    assert len(set(names)) == len(names)
    assert all(name.startswith(('"a field" ', '"a church')) for name in names)


def test_query_groups_get_unique_names(qgis_new_project):
    from qgis.core import QgsVectorLayer

    from geobridge_qgis.result_groups import QueryGroup, query_label

    assert query_label(["/x/drone_036.jpg"]).startswith("drone_036.jpg ")
    assert query_label(["a.jpg", "b.jpg", "c.jpg"]).startswith("a.jpg +2 ")
    project = QgsProject.instance()
    groups = []
    for _ in range(3):
        group = QueryGroup("same 10:00:00")
        layer = QgsVectorLayer("Point?crs=EPSG:4326", f"{group.reserve()} candidates", "memory")
        project.addMapLayer(layer)
        group.file([layer])
        groups.append(group.name)
    assert groups == ["same 10:00:00", "same 10:00:00 (2)", "same 10:00:00 (3)"]


def test_bundle_problems_are_one_line_and_bugs_go_to_the_log(make_dock, tmp_path, monkeypatch):
    from geobridge_qgis.core import bundle as bundle_module
    from geobridge_qgis.core.errors import UserError
    from geobridge_qgis.gui.errors import user_message

    logged: list[tuple[str, str]] = []

    def record(message, tag, _level):
        logged.append((tag, message))

    QgsApplication.messageLog().messageReceived.connect(record)
    try:
        dock = make_dock()
        broken = tmp_path / "broken bundle"
        broken.mkdir()
        (broken / "manifest.json").write_text("{ not json")
        dock.bundle_edit.setFilePath(str(broken))
        assert "unreadable manifest" in dock.bundle_info.text()
        assert str(broken) in dock.bundle_info.text()
        assert not dock.form.model_box.isCollapsed()  # it needs the user: open
        assert not [m for tag, m in logged if tag == "GeoBridge"]  # a user's mistake

        def bug(*_args, **_kwargs):
            raise ZeroDivisionError("the plugin's own fault")

        monkeypatch.setattr(bundle_module.Bundle, "load", bug)
        dock.bundle_edit.setFilePath(str(tmp_path / "another"))
        settle()
        text = dock.bundle_info.text()
        assert "unexpected error (ZeroDivisionError: the plugin's own fault)" in text
        assert "Traceback" not in text
        traces = [m for tag, m in logged if tag == "GeoBridge" and "Traceback" in m]
        assert traces and "ZeroDivisionError" in traces[-1]
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(record)
    assert user_message(UserError("x.tif: no such file")) == "x.tif: no such file"


def test_export_problems_are_user_errors(make_dock, tiny_bundle, tiny_index, tmp_path):
    from geobridge_qgis.core.errors import UserError

    settings.set_last_bundle(str(tiny_bundle))
    settings.set_last_index(str(tiny_index))
    dock = make_dock()
    with pytest.raises(UserError, match="nothing to export yet"):
        dock.export_results(tmp_path / "early.gpkg")
    locate(dock, "a field")
    with pytest.raises(UserError, match="cannot write"):
        dock.export_results(tmp_path / "no such folder" / "x.gpkg")
    assert dock.export_results(tmp_path / "ok").name == "ok.gpkg"
