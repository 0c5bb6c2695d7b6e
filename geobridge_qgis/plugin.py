"""The QGIS side: the Processing provider, the GeoBridge dock and the toolbar and menu entries.

Heavy imports (onnxruntime, FAISS, the engine) happen on first use, never at load: QGIS starts
every enabled plugin before its window shows.
"""

from __future__ import annotations

import traceback
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from .paths import ICON, icon_path

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
        self.rectangle_action: QAction | None = None
        self.polygon_action: QAction | None = None
        self.tools: dict[str, Any] = {}  # map tools, made on first use
        self.options_factory: Any = None

    def initProcessing(self) -> None:
        from .processing.provider import GeoBridgeProvider

        self.provider = GeoBridgeProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        from .gui.options import GeoBridgeOptionsFactory

        self.options_factory = GeoBridgeOptionsFactory()
        self.iface.registerOptionsWidgetFactory(self.options_factory)
        self.toolbar = self.iface.addToolBar("GeoBridge")
        self.toolbar.setObjectName(TOOLBAR)
        main = self.iface.mainWindow()
        self.dock_action = QAction(QIcon(str(ICON)), "GeoBridge", main)
        self.dock_action.setObjectName("GeoBridgeDockAction")
        self.dock_action.setToolTip("Locate a drone photo or a description (GeoBridge dock)")
        self.dock_action.setCheckable(True)
        self.dock_action.toggled.connect(self.show_dock)
        self._add(self.dock_action)
        self.rectangle_action = QAction(
            QIcon(str(icon_path("region_rectangle"))), "Draw search rectangle", main
        )
        self.rectangle_action.setObjectName("GeoBridgeDrawRectangle")
        self.rectangle_action.setToolTip("Draw a rectangle to search in (GeoBridge)")
        self.rectangle_action.setCheckable(True)
        self.rectangle_action.triggered.connect(lambda: self.draw_region("rectangle"))
        self._add(self.rectangle_action)
        self.polygon_action = QAction(
            QIcon(str(icon_path("region_polygon"))), "Draw search polygon", main
        )
        self.polygon_action.setObjectName("GeoBridgeDrawPolygon")
        self.polygon_action.setToolTip(
            "Draw a polygon to search in: left clicks add vertices, a right click finishes"
        )
        self.polygon_action.setCheckable(True)
        self.polygon_action.triggered.connect(lambda: self.draw_region("polygon"))
        self._add(self.polygon_action)
        basemap = QAction(QIcon(str(icon_path("basemap"))), "Add satellite basemap", main)
        basemap.setObjectName("GeoBridgeAddBasemap")
        basemap.setToolTip("Add the satellite imagery XYZ layer set in the GeoBridge settings")
        basemap.triggered.connect(self.add_basemap)
        self._add(basemap)
        # About is for the menu: the toolbar keeps the actions used while working.
        about = QAction(QIcon(str(ICON)), "About GeoBridge", main)
        about.setObjectName("GeoBridgeAbout")
        about.triggered.connect(self.show_about)
        self._add(about, toolbar=False)

    def _add(self, action: QAction, toolbar: bool = True) -> None:
        self.iface.addPluginToMenu(MENU, action)
        if toolbar:
            self.toolbar.addAction(action)
        self.actions.append(action)

    def show_dock(self, visible: bool = True) -> None:
        """Open (creating it on first use) or close the dock."""
        if self.dock is None:
            if not visible:
                return
            from .gui.install_dialog import ensure_dependencies

            # First use: the dock reads bundles with the engine; offer to install what is
            # missing (the dock opens either way, its Locate asks again).
            ensure_dependencies(self.iface.mainWindow())
            from .gui.dock import GeoBridgeDock

            self.dock = GeoBridgeDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
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

    def draw_region(self, kind: str) -> Any:
        """Make the rectangle or polygon region tool the canvas's map tool; the tool."""
        from .gui.maptools import PolygonRegionTool, RectangleRegionTool

        canvas = self.iface.mapCanvas()
        tool = self.tools.get(kind)
        if tool is None:
            if kind == "rectangle":
                tool, action = RectangleRegionTool(canvas), self.rectangle_action
            else:
                tool, action = PolygonRegionTool(canvas), self.polygon_action
            tool.setAction(action)  # QGIS unchecks it when another tool takes over
            tool.regionFailed.connect(self._warn)
            self.tools[kind] = tool
        canvas.setMapTool(tool)
        return tool

    def _warn(self, message: str) -> None:
        self.iface.messageBar().pushWarning("GeoBridge", message)

    def add_basemap(self) -> Any:
        from .core.errors import UserError
        from .gui.maptools import add_basemap

        try:
            return add_basemap()
        except UserError as e:  # the URL in the settings is the user's to fix
            self._warn(str(e))
            return None

    def show_about(self) -> None:
        self.iface.messageBar().pushInfo(
            "GeoBridge", "Locate drone photos and descriptions on satellite imagery."
        )

    def unload(self) -> None:
        """Remove everything the plugin added, each part on its own: a failure in one (logged
        as the bug it is) must not leave the others behind."""
        for step in (
            self._unload_dock,  # first: cancels a running build or locate
            self._unload_provider,
            self._unload_options,
            self._unload_tools,
            self._unload_actions,
            self._stop_engine,
        ):
            try:
                step()
            except Exception:  # reported; the next part still goes
                QgsMessageLog.logMessage(
                    traceback.format_exc(), "GeoBridge", Qgis.MessageLevel.Critical
                )

    def _unload_dock(self) -> None:
        dock, self.dock = self.dock, None
        if dock is None:
            return
        dock.shutdown()
        dock.visibilityChanged.disconnect(self._dock_visibility)
        dock.closed.disconnect(self._dock_closed)
        self.iface.removeDockWidget(dock)
        dock.setParent(None)
        dock.deleteLater()

    def _unload_options(self) -> None:
        factory, self.options_factory = self.options_factory, None
        if factory is not None:
            self.iface.unregisterOptionsWidgetFactory(factory)

    def _unload_provider(self) -> None:
        provider, self.provider = self.provider, None
        if provider is not None:
            QgsApplication.processingRegistry().removeProvider(provider)

    def _unload_tools(self) -> None:
        canvas = self.iface.mapCanvas()
        tools, self.tools = list(self.tools.values()), {}
        for tool in tools:
            if canvas.mapTool() is tool:
                canvas.unsetMapTool(tool)
            if hasattr(tool, "remove_band"):
                tool.remove_band()
            tool.setAction(None)
            tool.deleteLater()

    def _unload_actions(self) -> None:
        actions, self.actions = self.actions, []
        for action in actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.dock_action = self.rectangle_action = self.polygon_action = None
        toolbar, self.toolbar = self.toolbar, None
        if toolbar is not None:
            toolbar.setParent(None)
            toolbar.deleteLater()

    @staticmethod
    def _stop_engine() -> None:
        from .tasks import shutdown

        shutdown()
