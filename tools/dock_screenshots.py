"""Screenshots of the GeoBridge dock at the widths QGIS gives a side panel.

docs/dock-320.png and docs/dock-450.png: the Query tab, the same with the model group open,
and with the priors group open, and the Results tab after locating a demo photo.
docs/dock.png: Query and Results at the dock's default size (380 x 820 px, what a 1600 x 1000
screen leaves a right-hand dock), for the README.

Runs offscreen with the demo model and world; the demo index is built once into
out/dock-screenshots/. Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python tools/dock_screenshots.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEMO = ROOT / "resources" / "demo"
PHOTO = DEMO / "world" / "drone" / "drone_004.jpg"
WIDTHS = (320, 450)


class Iface:
    """The parts of QgisInterface the dock uses."""

    def __init__(self) -> None:
        from qgis.gui import QgsMapCanvas, QgsMessageBar

        self.canvas = QgsMapCanvas()
        self.bar = QgsMessageBar()

    def mapCanvas(self):
        return self.canvas

    def messageBar(self):
        return self.bar

    def activeLayer(self):
        return None

    def mainWindow(self):
        return None


def wait_for(condition, timeout: float = 300.0) -> None:
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        QgsApplication.processEvents()
        time.sleep(0.02)


def side_by_side(images, path: Path) -> None:
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    gap = 12
    width = sum(i.width() for i in images) + gap * (len(images) - 1)
    height = max(i.height() for i in images)
    out = QImage(width, height, QImage.Format.Format_ARGB32)
    out.fill(QColor("white"))
    painter = QPainter(out)
    x = 0
    for image in images:
        painter.drawImage(x, 0, image)
        x += image.width() + gap
    painter.end()
    if not out.save(str(path)):
        raise SystemExit(f"{path}: cannot write")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    try:
        from geobridge_qgis import settings
        from geobridge_qgis.core.service import IndexRequest, build_index
        from geobridge_qgis.gui.dock import DEFAULT_SIZE, GeoBridgeDock

        index = ROOT / "out" / "dock-screenshots" / "demo-index"
        if not (index / "index.json").is_file():
            index.parent.mkdir(parents=True, exist_ok=True)
            build_index(IndexRequest(DEMO / "bundle", str(DEMO / "world" / "satellite.tif"), index))
        # A returning analyst: the dock remembers the model and the index.
        settings.clear_dock()
        settings.set_last_bundle(str(DEMO / "bundle"))
        settings.set_last_index(str(index))
        dock = GeoBridgeDock(Iface())
        dock.setFloating(True)
        dock.resize(*DEFAULT_SIZE)
        dock.show()
        dock.photo_edit.setFilePath(str(PHOTO))
        wait_for(lambda: dock.photo_meta is not None)
        dock.locate()
        wait_for(lambda: not dock.is_busy())
        print(dock.status.text())
        for width in (*WIDTHS, DEFAULT_SIZE[0]):
            dock.resize(width, DEFAULT_SIZE[1])
            shots = []
            scroll = dock.tabs.widget(0).verticalScrollBar()
            for tab, model_open, priors_open, top in (
                (0, False, False, True),
                (0, True, False, True),  # the model group, at the top of the form
                (0, False, True, False),  # the priors group, at its bottom
                (1, False, False, True),
            ):
                dock.tabs.setCurrentIndex(tab)
                dock.form.model_box.setCollapsed(not model_open)
                dock.form.priors_box.setCollapsed(not priors_open)
                for _ in range(5):
                    QgsApplication.processEvents()
                scroll.setValue(scroll.minimum() if top else scroll.maximum())
                QgsApplication.processEvents()
                shots.append(dock.grab().toImage())
            if width in WIDTHS:
                side_by_side(shots, args.out / f"dock-{width}.png")
            else:
                side_by_side([shots[0], shots[3]], args.out / "dock.png")
        dock.shutdown()
        settings.clear_dock()
    finally:
        app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
