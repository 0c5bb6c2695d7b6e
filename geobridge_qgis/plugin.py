"""The QGIS side: the Processing provider, the GeoBridge dock and the toolbar and menu entries.

Heavy imports (onnxruntime, FAISS, the engine) happen on first use, never at load: QGIS starts
every enabled plugin before its window shows.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from .paths import ICON

MENU = "&GeoBridge"
TOOLBAR = "GeoBridgeToolbar"


class GeoBridgePlugin:
    def __init__(self, iface: Any):
        self.iface = iface
        self.toolbar: QToolBar | None = None
        self.actions: list[QAction] = []
        self.provider: Any = None
        self.dock: Any = None
        self.dock_action: QAction | None = None

    def initProcessing(self) -> None:
        from .processing.provider import GeoBridgeProvider

        self.provider = GeoBridgeProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        self.toolbar = self.iface.addToolBar("GeoBridge")
        self.toolbar.setObjectName(TOOLBAR)
        main = self.iface.mainWindow()
        self.dock_action = QAction(QIcon(str(ICON)), "GeoBridge", main)
        self.dock_action.setObjectName("GeoBridgeDockAction")
        self.dock_action.setToolTip("Locate a drone photo or a description (GeoBridge dock)")
        self.dock_action.setCheckable(True)
        self.dock_action.toggled.connect(self.show_dock)
        self._add(self.dock_action)
        about = QAction(QIcon(str(ICON)), "About GeoBridge", main)
        about.setObjectName("GeoBridgeAbout")
        about.triggered.connect(self.show_about)
        self._add(about)

    def _add(self, action: QAction) -> None:
        self.iface.addPluginToMenu(MENU, action)
        self.toolbar.addAction(action)
        self.actions.append(action)

    def show_dock(self, visible: bool = True) -> None:
        """Open (creating it on first use) or close the dock."""
        if self.dock is None:
            if not visible:
                return
            from .gui.dock import GeoBridgeDock

            self.dock = GeoBridgeDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._dock_visibility)
            # A dock closed with its title-bar button: the Qt visibility signal only comes
            # when the main window shows; QGIS's own "closed" always does.
            self.dock.closed.connect(self._dock_closed)
        self.dock.setUserVisible(visible)

    def _dock_visibility(self, visible: bool) -> None:
        if self.dock_action is not None and self.dock_action.isChecked() != visible:
            self.dock_action.blockSignals(True)
            self.dock_action.setChecked(visible)
            self.dock_action.blockSignals(False)

    def _dock_closed(self) -> None:
        self._dock_visibility(False)

    def show_about(self) -> None:
        self.iface.messageBar().pushInfo(
            "GeoBridge", "Locate drone photos and descriptions on satellite imagery."
        )

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.dock is not None:
            self.dock.shutdown()
            self.dock.visibilityChanged.disconnect(self._dock_visibility)
            self.dock.closed.disconnect(self._dock_closed)
            self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions.clear()
        self.dock_action = None
        if self.toolbar is not None:
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
        from .tasks import clear_encoders

        clear_encoders()
