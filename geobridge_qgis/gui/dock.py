"""The "GeoBridge" dock: pick a model and an index, drop a photo or type a description, locate.

It puts together the form (`form.LocateForm`: inputs -> request), the results
(`results.ResultsPanel`: table, zoom, export) and the background job (`jobs.Jobs`); what runs
is a QgsTask, so QGIS stays responsive. Fits a narrow panel: the form scrolls in its tab, the
results have a tab of their own, and Locate, progress and the status line stay in view below.

Driving it from a script or a desktop test (the widgets are the public API):
`bundle_edit`, `index_edit`, `photo_edit` (QgsFileWidget: setFilePath), `text_edit`, `top_k`,
`use_region`, `locate_button`, `cancel_button`, `build_button`, `table`, `export_button`,
`status`, `progress`; `locate()`, `build_index()`, `export_results(path)`,
`zoom_to_candidate(row)`, `is_busy()`; `outcome` (the last `LocateOutcome`) and `layers` (its
layers in the project).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsGeometry, QgsProcessingUtils, QgsRasterLayer
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core.errors import UserError
from ..core.service import LocateOutcome
from .errors import user_message
from .form import LocateForm
from .jobs import Jobs
from .photo_preview import is_image
from .results import ResultsPanel
from .widgets import guard_wheel, wrapped_label

QUERY_TAB, RESULTS_TAB = 0, 1
DEFAULT_SIZE = (380, 820)  # what QGIS gives the dock when it first docks it (pixels)


class GeoBridgeDock(QgsDockWidget):
    def __init__(self, iface: Any, parent: QWidget | None = None):
        super().__init__("GeoBridge", parent)
        self.setObjectName("GeoBridgeDock")
        self.iface = iface
        self.setAcceptDrops(True)
        self.outcome: LocateOutcome | None = None
        self.layers: Any = None  # layers.ResultLayers of the last run
        self._label = ""  # the running query's name in the layer tree
        self.jobs = Jobs(self)
        self.form = LocateForm()
        self.results = ResultsPanel(iface)
        self._build()
        self._expose()
        self._connect()
        # The guard must outlive the spin boxes it watches: it is kept on the dock.
        self._wheel_guard = guard_wheel(self.form)
        from .first_run import offer  # with no bundle: what one is, and the demo download

        offer(self)

    # ------------------------------------------------------------ layout

    def sizeHint(self) -> QSize:
        return QSize(*DEFAULT_SIZE)

    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(2, 2, 2, 2)
        # The form scrolls when the panel is short; Locate and the status stay in view.
        scroll = QScrollArea(body)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.form)
        self.tabs = QTabWidget(body)
        self.tabs.addTab(scroll, "Query")
        self.tabs.addTab(self.results, "Results")
        layout.addWidget(self.tabs, 1)

        buttons = QHBoxLayout()
        self.locate_button = QPushButton("Locate", body)
        self.locate_button.setObjectName("GeoBridgeLocate")
        self.locate_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.locate_button, 1)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status = wrapped_label("", body, lines=3)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.setWidget(body)

    def _expose(self) -> None:
        """The parts' widgets as the dock's own attributes (see the module docstring)."""
        f = self.form
        for name in ("bundle_edit", "bundle_info", "index_edit", "index_info", "build_button",
                     "photo_edit", "text_edit", "top_k", "rotate", "use_region", "use_gps",
                     "gps_radius", "use_altitude", "use_heading", "rerank"):  # fmt: skip
            setattr(self, name, getattr(f, name))
        self.thumbnail = f.preview.thumbnail
        self.exif_info = f.preview.exif_info
        self.table = self.results.table
        self.export_button = self.results.export_button

    def _connect(self) -> None:
        self.locate_button.clicked.connect(self.locate)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.build_button.clicked.connect(self.build_index)
        self.results.message.connect(self._say)
        self.jobs.progress.connect(self.progress.setValue)
        self.jobs.busy_changed.connect(self._busy_changed)
        self.jobs.located.connect(self._located)
        self.jobs.indexed.connect(self._indexed)
        self.jobs.failed.connect(lambda message: self._say(message, error=True))
        self.jobs.cancelled.connect(self._say)

    # ------------------------------------------------------------ state

    @property
    def task(self) -> Any:
        return self.jobs.task

    @property
    def photo_meta(self) -> Any:
        return self.form.preview.meta

    def is_busy(self) -> bool:
        return self.jobs.busy

    def _busy_changed(self, busy: bool) -> None:
        self.locate_button.setEnabled(not busy)
        self.build_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00;" if error else "")
        if error:
            self.iface.messageBar().pushMessage("GeoBridge", text, level=Qgis.MessageLevel.Warning)

    # drag and drop of an image file anywhere on the dock

    @staticmethod
    def _dropped_image(mime: Any) -> str | None:
        for url in mime.urls() if mime.hasUrls() else []:
            path = url.toLocalFile()
            if path and is_image(path):
                return path
        return None

    def dragEnterEvent(self, event: Any) -> None:
        if self._dropped_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: Any) -> None:
        path = self._dropped_image(event.mimeData())
        if path:
            self.photo_edit.setFilePath(path)
            self.tabs.setCurrentIndex(QUERY_TAB)
            event.acceptProposedAction()
        else:
            event.ignore()

    # ------------------------------------------------------------ locate

    def _region(self, what: str) -> tuple[str, str] | None:
        """The search region when 'search region only' is ticked; UserError when none."""
        if not self.use_region.isChecked():
            return None
        from .maptools import search_region

        region = search_region(self.iface)
        if region is None:
            raise UserError(
                "Draw a search region or select polygons of the active layer, "
                f"or untick 'search region only' to {what} everywhere."
            )
        return region

    @staticmethod
    def _results_path() -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = Path(QgsProcessingUtils.tempFolder())
        n = 0
        while (path := folder / f"geobridge-{stamp}{f'-{n}' if n else ''}.gpkg").exists():
            n += 1
        return path

    def locate(self) -> bool:
        """Start locating with the form's inputs; False (and a message) when one is missing."""
        if self.jobs.busy:
            return False
        from .install_dialog import ensure_dependencies

        if not ensure_dependencies(self):  # first use: offers to install what is missing
            return False
        try:
            request = self.form.locate_request(self._results_path(), self._region("search"))
        except UserError as e:
            self._say(str(e), error=True)
            return False
        settings.set_dock_options(self.form.options())
        from ..result_groups import query_label

        self._label = query_label(request.photos, request.text)
        self.jobs.locate(request)
        self._say("Locating… (the first run loads the model)")
        return True

    def _located(self, outcome: LocateOutcome) -> None:
        from ..layers import add_run_layers

        self.outcome = outcome
        self.form.show_device(outcome.device)  # the provider that really ran
        self.results.show_outcome(outcome)
        if outcome.run is not None:  # kept in the project's results store: its layers, styled
            try:
                self.layers = add_run_layers(outcome.store, outcome.run)
            except Exception as e:  # the results are kept; say why they are not shown
                self._say(user_message(e), error=True)
                return
        q = outcome.queries[0]
        best = f", best score {q.candidates[0].score:.3f}" if q.candidates else ""
        if q.candidates and q.candidates[0].method == "refined":
            best += " (refined by image matching)"
        priors = f" Priors used: {', '.join(q.priors_used)}." if q.priors_used else ""
        self._say(
            f"{len(q.candidates)} candidates for {q.label}{best} in "
            f"{outcome.seconds:.1f} s on {outcome.device}.{priors}"
        )
        if q.candidates:
            self.tabs.setCurrentIndex(RESULTS_TAB)
            self.zoom_to_candidate(0)

    def zoom_to_candidate(self, row: int) -> Any:
        return self.results.zoom_to_candidate(row)

    def fill_table(self) -> None:
        self.results.fill_table()

    def export_results(self, path: Path | str) -> Path:
        """Copy the last run's results GeoPackage to `path`."""
        return self.results.export_results(path)

    def cancel(self) -> None:
        self.jobs.cancel()

    # ------------------------------------------------------------ index

    def build_index(self) -> bool:
        """Index the active raster layer with the Processing algorithm, as a background task
        (the algorithm already handles web layers, regions and CRSs: one path, not two)."""
        if self.jobs.busy:
            return False
        from .install_dialog import ensure_dependencies

        if not ensure_dependencies(self):
            return False
        layer = self.iface.activeLayer()
        bundle = self.bundle_edit.filePath().strip()
        try:
            if not isinstance(layer, QgsRasterLayer) or not bundle:
                raise UserError("Pick a model bundle and select the raster layer to index.")
            region = self._region("index")
        except UserError as e:
            self._say(str(e), error=True)
            return False
        params: dict[str, Any] = {
            "INPUT": layer,
            "BUNDLE": bundle,
            "CHIP_SIZES": settings.chip_sizes_text(),
        }
        if region is not None:
            wkt, crs = region
            box = QgsGeometry.fromWkt(wkt).boundingBox()
            params["EXTENT"] = (
                f"{box.xMinimum()},{box.xMaximum()},{box.yMinimum()},{box.yMaximum()} [{crs}]"
            )
        from ..index_folders import index_folder_for_layer

        # One folder per layer, region, grid and model: building again resumes (or finds) it.
        params["OUTPUT"] = str(
            index_folder_for_layer(
                layer, bundle, params.get("EXTENT"), chip_sizes=settings.chip_sizes()
            )
        )
        if (Path(params["OUTPUT"]) / "index.json").is_file():
            self.index_edit.setFilePath(params["OUTPUT"])
            self._say(f"Index ready: {params['OUTPUT']} (built before from the same inputs)")
            return True
        if self.jobs.build_index(params) is None:
            return False
        self._say(f"Indexing {layer.name()}… (see the plan in the log panel)")
        return True

    def _indexed(self, folder: str) -> None:
        self.index_edit.setFilePath(folder)
        self._say(f"Index ready: {folder}")

    # ------------------------------------------------------------ unload

    def shutdown(self) -> None:
        """Cancel what runs and stop listening to it (the plugin is unloading)."""
        self.jobs.shutdown()
        self.form.preview.shutdown()
