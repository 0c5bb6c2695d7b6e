"""The steps of `make test-desktop`, run inside the real QGIS desktop.
Over 500 lines because QGIS loads it as one startup module: steps and their plumbing together.

tools/desktop_test.py starts `qgis` with a PYQGIS_STARTUP script that imports this file as a
module (QGIS runs a startup script in its shared ``__main__`` namespace, where names such as
``check`` are QGIS's own) and GEOBRIDGE_DESKTOP_CONFIG naming a JSON file (paths of the photo,
bundle, indexes, rasters, output folder). It runs before QGIS's window exists, so everything
happens later, from a QTimer: each step is a generator that acts the way a person would (a
mouse click on a toolbar or dock button, sent through the X server with xdotool; a path typed
into a field; a file dialog answered) and yields what it waits for. Every step ends with a
screenshot of the whole screen (ImageMagick `import -window root`). One JSON line per step goes
to the results file; QGIS's message log goes to a log file; the driver judges both.

Clicks are real X events, handled by QGIS's event loop after the step has yielded: a click that
opens a modal dialog runs a nested event loop, in which the steps keep running.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

# --------------------------------------------------------------------------------------------
# What this test knows of the GeoBridge dock's internals, in one table. The rest of this file
# uses only QGIS's own API and these entries; when the dock is reorganised, update them here.
# The dock itself is found by its objectName, the toolbar button by its action's objectName.
DOCK_OBJECT = "GeoBridgeDock"
DOCK_ACTION = "GeoBridgeDockAction"
DOCK = {
    "bundle": lambda d: d.bundle_edit,  # QgsFileWidget: the model bundle folder
    "index": lambda d: d.index_edit,  # QgsFileWidget: the index folder
    "photo": lambda d: d.photo_edit,  # QgsFileWidget: the photo
    "thumbnail": lambda d: d.thumbnail,  # QLabel: gets a pixmap once the photo is read
    "exif": lambda d: d.exif_info,  # QLabel: the photo's EXIF summary
    "region_only": lambda d: d.use_region,  # QCheckBox: "search region only"
    "locate": lambda d: d.locate_button,  # QPushButton: disabled while a task runs
    "build": lambda d: d.build_button,  # QPushButton: "Build index of the active layer"
    "export": lambda d: d.export_button,  # QPushButton: opens a save-file dialog
    "status": lambda d: d.status,  # QLabel: the one-line outcome
    "table": lambda d: d.table,  # QTableWidget: one row per candidate
}
# --------------------------------------------------------------------------------------------


class StepFailed(Exception):
    pass


class Wait:
    """Yielded by a step: poll `until()` (True ends the wait) for at most `timeout` seconds.
    `on_modal(widget)` answers a modal dialog this wait expects (True when it did)."""

    def __init__(self, what, until, timeout, on_modal=None):
        self.what, self.until, self.timeout, self.on_modal = what, until, timeout, on_modal
        self.started = time.monotonic()


def sleep(seconds):
    end = time.monotonic() + seconds
    return Wait(f"{seconds} s", lambda: time.monotonic() >= end, seconds + 5)


def check(condition, message):
    if not condition:
        raise StepFailed(message)


class Runner:
    TICK_MS = 100

    def __init__(self, config):
        from qgis.PyQt.QtCore import QTimer

        self.cfg = config
        self.out = Path(config["out"])
        self.results = Path(config["results"])
        self.steps = [s for s in STEPS if s[0] in config["steps"] or s[0] in ("start", "close")]
        self.index = -1
        self.gen = None
        self.wait = None
        self.step_started = 0.0
        self.busy = False
        self.new_layers = []
        self.iface = None
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(self.TICK_MS)

    # ---------------------------------------------------------------- the loop

    def tick(self):
        if self.busy:  # a step that spins an event loop must not be re-entered
            return
        self.busy = True
        try:
            self._tick()
        except Exception:  # never let an exception escape into QGIS's event loop
            self.record(False, "runner error:\n" + traceback.format_exc())
            self.next_step(skip_to_close=True)
        finally:
            self.busy = False

    def _tick(self):
        from qgis.PyQt.QtCore import QMetaObject

        if self.gen is None:
            self.next_step()
            return
        if self.wait is not None:
            modal = self.modal_dialog()
            if modal is not None:
                handled = self.wait.on_modal is not None and self.wait.on_modal(modal)
                if not handled and self.name == "close":
                    # On the way out: whatever an earlier step left open (already a failure).
                    self.log(f"closing a dialog left open: {describe_dialog(modal)}")
                    QMetaObject.invokeMethod(modal, "reject")  # a slot, public or not
                    return
                if not handled:
                    text = describe_dialog(modal)
                    self.screenshot(f"{self.number:02d}-{self.name}-unexpected-dialog")
                    modal.close()
                    self.fail(StepFailed(f"unexpected dialog: {text}"))
                    return
            try:
                done = self.wait.until()
            except Exception as e:
                self.fail(e)
                return
            if not done:
                if time.monotonic() - self.wait.started > self.wait.timeout:
                    self.fail(
                        StepFailed(
                            f"timed out after {self.wait.timeout} s waiting for {self.wait.what}"
                        )
                    )
                return
            self.wait = None
        try:
            self.wait = next(self.gen)
        except StopIteration:
            self.record(True, "")
            self.next_step()
        except Exception as e:
            self.fail(e)

    def modal_dialog(self):
        from qgis.PyQt.QtWidgets import QApplication

        widget = QApplication.activeModalWidget()
        return widget if widget is not None and widget.isVisible() else None

    def fail(self, error):
        detail = str(error) if isinstance(error, StepFailed) else traceback.format_exc()
        self.record(False, detail)
        with _suppress():
            self.screenshot(f"{self.number:02d}-{self.name}-failed")
        self.next_step(skip_to_close=True)

    def next_step(self, skip_to_close=False):
        self.wait = None
        if skip_to_close and self.index >= 0 and self.steps[self.index][0] == "close":
            # Quitting failed: end the event loop (the driver reports the failed close).
            from qgis.PyQt.QtWidgets import QApplication

            self.timer.stop()
            QApplication.instance().quit()
            return
        if skip_to_close:
            for name, _ in self.steps[self.index + 1 :]:
                if name != "close":
                    self.record(False, "not run: an earlier step failed", name=name)
            self.index = len(self.steps) - 2
        self.index += 1
        if self.index >= len(self.steps):
            self.timer.stop()
            return
        self.name, step = self.steps[self.index]
        self.number = self.index + 1
        self.step_started = time.monotonic()
        self.gen = step(self)
        self.log(f"step {self.name}")
        self.record(None, "started")  # the driver's clue when QGIS dies during a step

    def record(self, ok, detail, name=None):
        seconds = round(time.monotonic() - self.step_started, 2) if name is None else 0.0
        line = {"step": name or self.name, "ok": ok, "detail": detail, "seconds": seconds}
        with self.results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def log(self, text):
        with (self.out / "steps.log").open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    # ---------------------------------------------------------------- helpers for steps

    def dock(self):
        from qgis.PyQt.QtWidgets import QDockWidget

        return self.iface.mainWindow().findChild(QDockWidget, DOCK_OBJECT)

    def w(self, name):
        return DOCK[name](self.dock())

    def click(self, name):
        """A mouse click on a dock button, as a person makes it."""
        from qgis.PyQt.QtWidgets import QApplication

        self.reveal(name)
        QApplication.processEvents()  # the tab, group and scroll take their new geometry
        button = self.w(name)
        check(button.isEnabled(), f"the dock's {name} button is disabled")
        self.click_widget(button)

    def click_widget(self, widget):
        """Move the mouse over `widget` and click (xdotool: a real X event, which QGIS
        receives when its event loop runs again)."""
        from qgis.PyQt.QtCore import QPoint
        from qgis.PyQt.QtWidgets import QApplication

        check(widget.isVisible(), f"{widget.objectName() or widget} is not shown")
        # Near the left end: a narrow dock may cut a wide button's right part off.
        point = widget.mapToGlobal(QPoint(min(widget.width() // 2, 30), widget.height() // 2))
        under = QApplication.widgetAt(point)
        check(
            under is widget or widget.isAncestorOf(under),
            f"something covers {widget.objectName() or widget} at {point.x()},{point.y()}",
        )
        subprocess.run(
            ["xdotool", "mousemove", "--sync", str(point.x()), str(point.y()), "click", "1"],
            check=True,
            timeout=30,
        )

    def reveal(self, name):
        """Bring one of the dock's widgets into view as a person does: its tab, its group
        opened if collapsed, the dock scrolled to it."""
        from qgis.PyQt.QtWidgets import QGroupBox, QScrollArea, QStackedWidget, QTabWidget

        widget = parent = self.w(name)
        node = widget.parentWidget()
        while node is not None:
            up = node.parentWidget()
            if isinstance(node, QGroupBox) and getattr(node, "isCollapsed", lambda: False)():
                node.setCollapsed(False)  # a collapsed group: the person opens it
            if isinstance(up, QStackedWidget) and isinstance(up.parentWidget(), QTabWidget):
                up.parentWidget().setCurrentWidget(node)  # its tab: the person clicks it
            node = up
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            parent.ensureWidgetVisible(widget)
            # Only up and down: a person does not scroll the dock sideways.
            parent.horizontalScrollBar().setValue(0)

    def screenshot(self, name):
        path = self.out / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30)
        return path

    def shot(self, name):
        """Let the map finish drawing and the widgets repaint, then photograph the screen."""
        canvas = self.iface.mapCanvas()
        yield sleep(0.3)
        yield Wait("the map to finish drawing", lambda: not canvas.isDrawing(), 30)
        yield sleep(0.5)
        self.screenshot(f"{self.number:02d}-{name}")

    def watch_layers(self):
        from qgis.core import QgsProject

        self.new_layers = []
        QgsProject.instance().layersAdded.connect(self._layers_added)

    def _layers_added(self, layers):
        self.new_layers.extend(layers)

    def unwatch_layers(self):
        from qgis.core import QgsProject

        with _suppress():
            QgsProject.instance().layersAdded.disconnect(self._layers_added)

    def run_locate(self, label, heatmap=True):
        """Click Locate, wait for the task, check the dock's answer and the new layers."""
        from qgis.core import QgsRasterLayer, QgsVectorLayer, QgsWkbTypes

        locate = self.w("locate")
        self.watch_layers()
        self.click("locate")
        yield Wait("Locate to start", lambda: not locate.isEnabled(), 30)
        yield Wait("Locate to finish", lambda: locate.isEnabled(), self.cfg["locate_timeout"])
        self.unwatch_layers()
        status = self.w("status").text()
        rows = self.w("table").rowCount()
        self.log(f"{label}: {status!r}, {rows} rows, layers {[x.name() for x in self.new_layers]}")
        check("candidates for" in status, f"Locate did not answer: {status!r}")
        check(rows > 0, f"Locate gave no candidates: {status!r}")
        points = [
            x
            for x in self.new_layers
            if isinstance(x, QgsVectorLayer) and x.geometryType() == QgsWkbTypes.PointGeometry
        ]
        rasters = [x for x in self.new_layers if isinstance(x, QgsRasterLayer)]
        check(
            points and points[0].isValid() and points[0].featureCount() == rows,
            f"no candidate layer with {rows} points among the new layers "
            f"{[x.name() for x in self.new_layers]}",
        )
        # An approximate index has no heat map by design (scoring every chip would defeat it).
        if heatmap:
            check(rasters and all(r.isValid() for r in rasters), "no valid heat map layer")
        self.reveal("table")
        yield from self.shot(label)


# -------------------------------------------------------------------- steps


def step_start(r):
    import qgis.utils

    yield Wait(
        "QGIS's main window",
        lambda: qgis.utils.iface is not None and qgis.utils.iface.mainWindow().isVisible(),
        120,
    )
    r.iface = qgis.utils.iface
    # No window manager under Xvfb: give the window the whole screen, as a maximised one has.
    w, h = r.cfg["screen"]
    r.iface.mainWindow().setGeometry(0, 0, w, h)
    yield Wait("the plugins to load", lambda: "geobridge_qgis" in qgis.utils.plugins, 60)
    yield from r.shot("qgis-started")


def step_open(r):
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QAction, QToolButton

    if r.cfg.get("satellite"):  # the demo satellite image, as the analyst's project has it
        layer = QgsRasterLayer(r.cfg["satellite"], "satellite")
        check(layer.isValid(), f"{r.cfg['satellite']}: QGIS cannot open it")
        QgsProject.instance().addMapLayer(layer)
        QgsProject.instance().setCrs(layer.crs())
        r.iface.mapCanvas().setExtent(layer.extent())
    else:
        check(QgsProject.instance().count() > 0, "no project loaded: an empty map")
    action = r.iface.mainWindow().findChild(QAction, DOCK_ACTION)
    check(action is not None, f"no {DOCK_ACTION} toolbar button: the plugin did not start")
    buttons = [w for w in action.associatedWidgets() if isinstance(w, QToolButton)]
    check(buttons, f"{DOCK_ACTION} has no toolbar button")
    r.click_widget(buttons[0])
    yield Wait("the dock to show", lambda: r.dock() is not None and r.dock().isVisible(), 60)
    if r.cfg.get("preset"):  # `make qgis` pre-sets them in the profile's settings
        for field in ("bundle", "index"):
            shown, wanted = r.w(field).filePath(), r.cfg[field]
            check(shown == wanted, f"the dock's {field} field shows {shown!r}, not {wanted!r}")
    else:  # filled as a person types paths into them
        r.w("bundle").setFilePath(r.cfg["bundle"])
        r.w("index").setFilePath(r.cfg["index"])
    r.w("region_only").setChecked(False)
    yield from r.shot("dock-open")


def step_photo(r):
    r.w("photo").setFilePath(r.cfg["photo"])
    thumb, exif = r.w("thumbnail"), r.w("exif")
    yield Wait(
        "the photo's thumbnail",
        lambda: thumb.pixmap() is not None and not thumb.pixmap().isNull(),
        60,
    )
    check("GPS" in exif.text(), f"no EXIF summary under the thumbnail: {exif.text()!r}")
    yield from r.shot("photo-chosen")


def step_locate(r):
    yield from r.run_locate("located")


def step_export(r):
    target = Path(r.cfg["export"])

    def answer(dialog):
        from qgis.PyQt.QtWidgets import QDialogButtonBox, QFileDialog, QLineEdit

        if hasattr(dialog, "runs") and hasattr(dialog, "file"):
            # The dock's export dialog: the runs to take (the newest is ticked) and a file.
            check(dialog.runs.count() >= 1, "the export dialog lists no run")
            dialog.file.setFilePath(str(target))
            r.screenshot(f"{r.number:02d}-export-dialog")
            dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
            return True
        if not isinstance(dialog, QFileDialog):
            return False
        # A person types the path into "File name" and clicks Save (Qt's own dialog: no
        # desktop environment under Xvfb, so no native one).
        name = dialog.findChild(QLineEdit, "fileNameEdit")
        check(name is not None, "no file name field in the export dialog (a native dialog?)")
        name.setText(str(target))
        r.screenshot(f"{r.number:02d}-export-dialog")
        box = dialog.findChild(QDialogButtonBox)
        save = box.button(QDialogButtonBox.Save) if box is not None else None
        check(save is not None, "no Save button in the export dialog (a native dialog?)")
        save.click()
        return True

    r.click("export")
    yield Wait("the exported GeoPackage", lambda: target.is_file(), 30, on_modal=answer)
    yield sleep(0.5)
    with sqlite3.connect(target) as db:
        tables = [t for (t,) in db.execute("SELECT table_name FROM gpkg_contents")]
    r.log(f"exported {target}: {tables}")
    check(
        any(t.startswith("candidates") for t in tables),
        f"{target}: no candidates (tables: {tables})",
    )
    check("Exported" in r.w("status").text(), f"the dock says {r.w('status').text()!r}")
    r.reveal("export")
    yield from r.shot("exported")


def step_build(r):
    from qgis.core import QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(r.cfg["small_raster"], "small raster")
    check(layer.isValid(), f"{r.cfg['small_raster']}: QGIS cannot open it")
    QgsProject.instance().addMapLayer(layer)
    r.iface.setActiveLayer(layer)  # the analyst selects it in the Layers panel
    before = r.w("index").filePath()
    build = r.w("build")
    yield sleep(0.2)  # the Layers panel shows the selection
    r.click("build")
    yield Wait("the build to start", lambda: not build.isEnabled(), 30)
    yield Wait("the build to finish", lambda: build.isEnabled(), r.cfg["build_timeout"])
    status = r.w("status").text()
    after = r.w("index").filePath()
    r.log(f"build: {status!r}, index {after}")
    check("Index ready" in status, f"the build did not finish: {status!r}")
    check(
        after != before and (Path(after) / "index.json").is_file(),
        f"no new index in the dock's Index field ({after})",
    )
    manifest = json.loads((Path(after) / "index.json").read_text())
    check(manifest.get("count", 0) > 0, f"{after}: an empty index")
    r.reveal("index")
    yield from r.shot("index-built")


def step_locate2(r):
    check(r.w("index").filePath() != r.cfg["index"], "the dock does not use the index just built")
    yield from r.run_locate("located-with-built-index")


def step_build_approx(r):
    """The same layer as an approximate (IVF) index: the analyst lowers the exact-search
    limit (Settings > Options > GeoBridge) and builds with 100 m chips only."""
    from geobridge_qgis import settings

    exact_before = r.w("index").filePath()
    settings.set_exact_max_chips(50)  # the small raster has about 80 chips of 100 m
    settings.set_chip_sizes((100.0,))
    build = r.w("build")
    r.click("build")
    yield Wait("the build to start", lambda: not build.isEnabled(), 30)
    yield Wait("the build to finish", lambda: build.isEnabled(), r.cfg["build_timeout"])
    status, after = r.w("status").text(), r.w("index").filePath()
    r.log(f"approximate build: {status!r}, index {after}")
    check("Index ready" in status, f"the build did not finish: {status!r}")
    check(after != exact_before and (Path(after) / "index.json").is_file(),
          f"no new index in the dock's Index field ({after})")  # fmt: skip
    manifest = json.loads((Path(after) / "index.json").read_text())
    check(
        manifest.get("factory", "").startswith(("IVF", "HNSW")),
        f"{after}: not approximate ({manifest})",
    )
    r.reveal("index")
    yield from r.shot("approximate-index-built")


def step_locate3(r):
    yield from r.run_locate("located-with-approximate-index", heatmap=False)


def step_close(r):
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QMessageBox

    if r.iface is None:  # QGIS never showed its window: end it without ceremony
        from qgis.PyQt.QtWidgets import QApplication

        QApplication.instance().quit()
        return
    yield from r.shot("before-close")

    def discard(dialog):
        # "Save the project?" on the way out: a person discards (the results were exported);
        # "temporary layers will be lost, proceed?": yes.
        if isinstance(dialog, QMessageBox):
            r.log(f"answered on the way out: {describe_dialog(dialog)}")
            for answer in (QMessageBox.Discard, QMessageBox.Yes):
                if dialog.button(answer) is not None:
                    dialog.button(answer).click()
                    return True
        return False

    layers = QgsProject.instance().mapLayers().values()
    r.log(f"layers at the end: {[(x.name(), x.providerType()) for x in layers]}")
    # Recorded first: when QGIS quits, this script ends with it. The driver checks the exit.
    r.record(True, "quit requested")
    r.timer.setInterval(50)
    QTimer.singleShot(0, r.iface.actionExit().trigger)
    yield Wait("QGIS to quit", lambda: False, 120, on_modal=discard)


STEPS = [
    ("start", step_start),
    ("open", step_open),
    ("photo", step_photo),
    ("locate", step_locate),
    ("export", step_export),
    ("build", step_build),
    ("locate2", step_locate2),
    ("build_approx", step_build_approx),
    ("locate3", step_locate3),
    ("close", step_close),
]


# -------------------------------------------------------------------- plumbing


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


def describe_dialog(widget):
    from qgis.PyQt.QtWidgets import QLabel

    texts = [lbl.text() for lbl in widget.findChildren(QLabel) if lbl.text()]
    return (
        f"{widget.windowTitle()!r} ({type(widget).__name__}, {widget.objectName()!r}): "
        + (" | ".join(texts)[:400])
    )


def capture_log(path):
    """Every QgsMessageLog message, one line each (the driver fails on Python errors)."""
    from qgis.core import QgsApplication

    def received(message, tag, level):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tag": tag, "level": int(level), "message": message}) + "\n")

    QgsApplication.messageLog().messageReceived.connect(received)
    return received


def main():
    # QGIS 3.22 runs the startup script twice; the test must start once.
    if getattr(builtins, "_geobridge_desktop_runner", None) is not None:
        return
    config = json.loads(Path(os.environ["GEOBRIDGE_DESKTOP_CONFIG"]).read_text())
    builtins._geobridge_desktop_log = capture_log(config["messages"])
    builtins._geobridge_desktop_runner = Runner(config)
    print(f"desktop test: steps running in {sys.executable}", file=sys.stderr)
