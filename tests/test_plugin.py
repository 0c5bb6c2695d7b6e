"""The plugin loads in QGIS 3.22 through QGIS's own plugin loader and unloads cleanly."""

from __future__ import annotations

import configparser
import sys

import qgis.utils
from conftest import ROOT
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QToolBar

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


def test_load_and_unload_leave_nothing_behind(qgis_iface, monkeypatch):
    main = qgis_iface.mainWindow()
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(ROOT)])
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.pluginMetadata("geobridge_qgis", "name") == "GeoBridge"

    assert qgis.utils.loadPlugin("geobridge_qgis")
    assert qgis.utils.startPlugin("geobridge_qgis")
    try:
        toolbars = main.findChildren(QToolBar, "GeoBridgeToolbar")
        assert len(toolbars) == 1
        assert [a.objectName() for a in toolbars[0].actions()] == ["GeoBridgeAbout"]
    finally:
        assert qgis.utils.unloadPlugin("geobridge_qgis")
    _flush_deletes()
    assert main.findChildren(QToolBar, "GeoBridgeToolbar") == []
    assert main.findChildren(QAction, "GeoBridgeAbout") == []
    assert "geobridge_qgis" not in qgis.utils.plugins
    assert "geobridge_qgis.plugin" not in sys.modules
