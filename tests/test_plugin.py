"""The plugin loads in QGIS 3.22 through QGIS's own plugin loader and unloads cleanly:
its Processing provider, dock, actions and modules all go."""

from __future__ import annotations

import configparser
import sys

import qgis.utils
from conftest import ROOT
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent
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
    assert (ROOT / "geobridge_qgis" / general["icon"]).is_file()
    for dep in ("onnxruntime", "faiss-cpu", "tokenizers", "ftfy"):
        assert dep in general["about"]


def _flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


def test_load_and_unload_leave_nothing_behind(qgis_iface, qgis_processing, monkeypatch):
    main = qgis_iface.mainWindow()
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(ROOT)])
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.pluginMetadata("geobridge_qgis", "name") == "GeoBridge"

    # Other tests may have imported the dock already; loading must not need it.
    for name in [m for m in sys.modules if m.startswith("geobridge_qgis.gui")]:
        monkeypatch.delitem(sys.modules, name)
    assert qgis.utils.loadPlugin("geobridge_qgis")
    assert qgis.utils.startPlugin("geobridge_qgis")
    registry = QgsApplication.processingRegistry()
    try:
        toolbars = main.findChildren(QToolBar, "GeoBridgeToolbar")
        assert len(toolbars) == 1
        assert [a.objectName() for a in toolbars[0].actions()] == [
            "GeoBridgeDockAction",
            "GeoBridgeDrawRectangle",
            "GeoBridgeDrawPolygon",
            "GeoBridgeAddBasemap",
            "GeoBridgeAbout",
        ]
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
    _flush_deletes()
    assert main.findChildren(QToolBar, "GeoBridgeToolbar") == []
    assert main.findChildren(QAction, "GeoBridgeAbout") == []
    assert main.findChildren(QAction, "GeoBridgeDockAction") == []
    for name in ("GeoBridgeDrawRectangle", "GeoBridgeDrawPolygon", "GeoBridgeAddBasemap"):
        assert main.findChildren(QAction, name) == [], name
    assert qgis_iface.mapCanvas().mapTool() is None
    assert main.findChildren(QDockWidget, "GeoBridgeDock") == []
    assert registry.providerById("geobridge") is None
    assert "geobridge_qgis" not in qgis.utils.plugins
    for module in ("geobridge_qgis.plugin", "geobridge_qgis.gui.dock",
                   "geobridge_qgis.processing.provider", "geobridge_qgis.tasks",
                   "geobridge_qgis.gui.maptools", "geobridge_qgis.settings"):  # fmt: skip
        assert module not in sys.modules, module
