"""The plugin loads in QGIS 3.22 through QGIS's own plugin loader and unloads cleanly:
its Processing provider, dock, actions and modules all go."""

from __future__ import annotations

import configparser
import sys

import pytest
import qgis.utils
from conftest import ROOT
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtGui import QIcon, QImage
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QToolBar

REQUIRED = ["name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
            "repository", "homepage", "tracker", "tags", "icon"]  # fmt: skip


def test_metadata_is_complete():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "geobridge_qgis" / "metadata.txt")
    general = meta["general"]
    for key in REQUIRED:
        assert general.get(key, "").strip(), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["supportsQt6"] == "True"
    assert (ROOT / "geobridge_qgis" / general["icon"]).is_file()
    for dep in ("onnxruntime", "faiss-cpu", "tokenizers", "ftfy"):
        assert dep in general["about"]


def flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()


@pytest.fixture
def restore_plugin_modules():
    """Loading and unloading the plugin re-imports its modules and then drops them all; the
    other tests' modules hold the earlier ones (and their classes: `except UserError` must see
    one class), so afterwards exactly those are put back."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "geobridge_qgis"}
    yield
    for name in [k for k in sys.modules if k.split(".")[0] == "geobridge_qgis"]:
        del sys.modules[name]
    sys.modules.update(saved)


def load_plugin(qgis_iface, monkeypatch) -> list[str]:
    """Load and start the plugin through QGIS's own loader (use with the fixture
    `restore_plugin_modules`); the names of the actions it put in its menu, in order."""
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(ROOT)])
    menu: list[str] = []
    monkeypatch.setattr(
        qgis_iface, "addPluginToMenu", lambda _name, action: menu.append(action.objectName())
    )
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.pluginMetadata("geobridge_qgis", "name") == "GeoBridge"
    # Other tests may have imported the dock already; loading must not need it.
    for name in [m for m in sys.modules if m.startswith("geobridge_qgis.gui")]:
        del sys.modules[name]
    assert qgis.utils.loadPlugin("geobridge_qgis")
    assert qgis.utils.startPlugin("geobridge_qgis")
    return menu


def assert_nothing_left(main, qgis_iface) -> None:
    """After unloading: no toolbar, action, dock, map tool, provider or plugin module."""
    flush_deletes()
    assert main.findChildren(QToolBar, "GeoBridgeToolbar") == []
    for name in ("GeoBridgeDockAction", "GeoBridgeDrawRectangle", "GeoBridgeDrawPolygon",
                 "GeoBridgeAddBasemap", "GeoBridgeAbout"):  # fmt: skip
        assert main.findChildren(QAction, name) == [], name
    assert qgis_iface.mapCanvas().mapTool() is None
    assert main.findChildren(QDockWidget, "GeoBridgeDock") == []
    assert QgsApplication.processingRegistry().providerById("geobridge") is None
    assert "geobridge_qgis" not in qgis.utils.plugins
    for module in ("geobridge_qgis.plugin", "geobridge_qgis.gui.dock",
                   "geobridge_qgis.processing.provider", "geobridge_qgis.tasks",
                   "geobridge_qgis.gui.maptools", "geobridge_qgis.settings"):  # fmt: skip
        assert module not in sys.modules, module


def _pixels(icon: QIcon) -> bytes:
    image = icon.pixmap(24, 24).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    return bytes(image.constBits().asarray(image.sizeInBytes()))


def test_load_and_unload_leave_nothing_behind(
    qgis_iface, qgis_processing, monkeypatch, restore_plugin_modules
):
    main = qgis_iface.mainWindow()
    menu = load_plugin(qgis_iface, monkeypatch)
    registry = QgsApplication.processingRegistry()
    try:
        toolbars = main.findChildren(QToolBar, "GeoBridgeToolbar")
        assert len(toolbars) == 1
        # About is in the menu only; the toolbar holds the working actions.
        assert [a.objectName() for a in toolbars[0].actions()] == [
            "GeoBridgeDockAction",
            "GeoBridgeDrawRectangle",
            "GeoBridgeDrawPolygon",
            "GeoBridgeAddBasemap",
        ]
        assert menu == [a.objectName() for a in toolbars[0].actions()] + ["GeoBridgeAbout"]
        # Each button has its own icon: no two render the same pixels.
        images = [_pixels(a.icon()) for a in toolbars[0].actions()]
        assert all(len(i) == 24 * 24 * 4 for i in images)
        assert len(set(images)) == len(images)
        provider = registry.providerById("geobridge")
        assert provider is not None and provider.name() == "GeoBridge"
        assert sorted(a.id() for a in provider.algorithms()) == [
            "geobridge:buildindex",
            "geobridge:locatephotos",
            "geobridge:locatetext",
        ]
        # The dock is made on first use, not at load.
        assert main.findChildren(QDockWidget, "GeoBridgeDock") == []
        assert "geobridge_qgis.gui.dock" not in sys.modules
        toolbars[0].actions()[0].trigger()
        docks = main.findChildren(QDockWidget, "GeoBridgeDock")
        assert len(docks) == 1 and docks[0].windowTitle() == "GeoBridge"
        assert toolbars[0].actions()[0].isChecked()
        docks[0].close()  # closing the dock unchecks its action
        assert not toolbars[0].actions()[0].isChecked()
        toolbars[0].actions()[0].trigger()
        assert main.findChildren(QDockWidget, "GeoBridgeDock") == docks  # the same dock again
        # The region tools are made on first use; unloading takes them off the canvas.
        (draw,) = main.findChildren(QAction, "GeoBridgeDrawPolygon")
        draw.trigger()
        assert type(qgis_iface.mapCanvas().mapTool()).__name__ == "PolygonRegionTool"
    finally:
        assert qgis.utils.unloadPlugin("geobridge_qgis")
    assert_nothing_left(main, qgis_iface)
