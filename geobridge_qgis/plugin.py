"""The QGIS side: toolbar and menu entries. Heavy imports happen on first use, never at load."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

MENU = "&GeoBridge"
TOOLBAR = "GeoBridgeToolbar"
ICON = Path(__file__).resolve().parent / "resources" / "icons" / "geobridge.svg"


class GeoBridgePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.toolbar: QToolBar | None = None
        self.actions: list[QAction] = []

    def initGui(self) -> None:
        self.toolbar = self.iface.addToolBar("GeoBridge")
        self.toolbar.setObjectName(TOOLBAR)
        about = QAction(QIcon(str(ICON)), "About GeoBridge", self.iface.mainWindow())
        about.setObjectName("GeoBridgeAbout")
        about.triggered.connect(self.show_about)
        self._add(about)

    def _add(self, action: QAction) -> None:
        self.iface.addPluginToMenu(MENU, action)
        self.toolbar.addAction(action)
        self.actions.append(action)

    def show_about(self) -> None:
        self.iface.messageBar().pushInfo(
            "GeoBridge", "Locate drone photos and descriptions on satellite imagery."
        )

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions.clear()
        if self.toolbar is not None:
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
