"""The "GeoBridge" dock: pick a model and an index, drop a photo or type a description, locate.

Everything slow (reading a photo, the model, the search) runs in QgsTasks; the dock only
reads small JSON files (a bundle's manifest, an index's index.json) on the main thread.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMessageLog,
    QgsPointXY,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
)
from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QImage, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import settings as geobridge_settings
from ..core import defaults
from ..core.errors import UserError
from ..core.geodesy import haversine_m
from ..core.service import LocateOutcome, LocateRequest
from ..paths import DEMO_BUNDLE, IMAGE_FILTER
from ..tasks import LocateTask, PhotoInfoTask

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
SETTINGS = "geobridge/dock/"
# Score: what ordered the candidates (the rank score once re-ranked); Cosine: retrieval's.
COLUMNS = ["Rank", "Method", "Score", "Probability", "± m", "Heading", "Distance to photo GPS",
           "Cosine"]  # fmt: skip


def exif_summary(meta: Any) -> str:
    """One or two lines of what the photo says about where it was taken."""
    parts = []
    if meta.lat is not None and meta.lon is not None:
        acc = f" (±{meta.gps_accuracy_m:.0f} m)" if meta.gps_accuracy_m else ""
        parts.append(f"GPS {meta.lat:.6f}, {meta.lon:.6f}{acc}")
    else:
        parts.append("no GPS position in the photo")
    if meta.altitude_m is not None:
        parts.append(f"altitude {meta.altitude_m:.0f} m above take-off")
    elif "gps_altitude_m" in meta.extra:
        parts.append(f"GPS altitude {float(meta.extra['gps_altitude_m']):.0f} m a.s.l.")
    if meta.heading_deg is not None:
        parts.append(f"heading {meta.heading_deg:.0f}°")
    if meta.pitch_deg is not None:
        parts.append(f"pitch {meta.pitch_deg:.0f}°")
    if meta.make:
        parts.append(meta.make)
    return " · ".join(parts)


class GeoBridgeDock(QgsDockWidget):
    """The dock. Public attributes are the widgets, so tests and scripts can drive it."""

    def __init__(self, iface: Any, parent: QWidget | None = None):
        super().__init__("GeoBridge", parent)
        self.setObjectName("GeoBridgeDock")
        self.iface = iface
        self.setAcceptDrops(True)
        self.task: LocateTask | None = None
        self.photo_task: PhotoInfoTask | None = None
        self.outcome: LocateOutcome | None = None
        self.photo_meta: Any = None
        self._bundle_model_id: str | None = None
        self._bundle_summary = ""
        self._build()
        settings = QgsSettings()
        bundle = settings.value(SETTINGS + "bundle", "", type=str)
        if not bundle and (DEMO_BUNDLE / "manifest.json").is_file():
            bundle = str(DEMO_BUNDLE)
        self.bundle_edit.setFilePath(bundle)
        self.index_edit.setFilePath(settings.value(SETTINGS + "index", "", type=str))
        self.top_k.setValue(settings.value(SETTINGS + "top_k", 10, type=int))
        for box, key in self._option_boxes():
            box.setChecked(settings.value(SETTINGS + key, True, type=bool))
        self.gps_radius.setValue(settings.value(SETTINGS + "gps_radius_m", 0, type=int))
        # The pickers start in the folders of the GeoBridge settings.
        self.bundle_edit.setDefaultRoot(geobridge_settings.bundles_folder())
        self.index_edit.setDefaultRoot(geobridge_settings.index_cache_folder())
        from .first_run import offer  # with no bundle: what one is, and the demo download

        offer(self)

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)

        model = QGroupBox("Model and index", body)
        form = QFormLayout(model)
        self.bundle_edit = QgsFileWidget(model)
        self.bundle_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.bundle_edit.setDialogTitle("GeoBridge model bundle folder")
        self.bundle_edit.fileChanged.connect(self._bundle_changed)
        self.bundle_info = QLabel("no model", model)
        self.bundle_info.setWordWrap(True)
        self.index_edit = QgsFileWidget(model)
        self.index_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.index_edit.setDialogTitle("GeoBridge index folder")
        self.index_edit.fileChanged.connect(self._index_changed)
        self.index_info = QLabel("no index: build one from a raster layer", model)
        self.index_info.setWordWrap(True)
        self.build_button = QPushButton("Build index of the active layer", model)
        self.build_button.setToolTip(
            "Runs Processing > GeoBridge > Build reference index in the background over the "
            "active raster layer (the search region's bounding box when 'search region only' "
            "is ticked; a web layer always needs one)."
        )
        self.build_button.clicked.connect(self.build_index)
        form.addRow("Bundle", self.bundle_edit)
        form.addRow("", self.bundle_info)
        form.addRow("Index", self.index_edit)
        form.addRow("", self.index_info)
        form.addRow("", self.build_button)
        layout.addWidget(model)

        query = QGroupBox("Query", body)
        qform = QFormLayout(query)
        self.photo_edit = QgsFileWidget(query)
        self.photo_edit.setStorageMode(QgsFileWidget.GetFile)
        self.photo_edit.setFilter(IMAGE_FILTER)
        self.photo_edit.setDialogTitle("Drone photo")
        self.photo_edit.fileChanged.connect(self._photo_changed)
        self.thumbnail = QLabel("drop a photo here", query)
        self.thumbnail.setAlignment(Qt.AlignCenter)
        self.thumbnail.setMinimumSize(240, 180)
        self.thumbnail.setStyleSheet("QLabel { border: 1px dashed #999; color: #777; }")
        self.exif_info = QLabel("", query)
        self.exif_info.setWordWrap(True)
        self.text_edit = QPlainTextEdit(query)
        self.text_edit.setPlaceholderText(
            "optional: describe the place, e.g. 'a church beside a "
            "roundabout, red-roofed houses to the north'"
        )
        self.text_edit.setMaximumHeight(64)
        self.top_k = QSpinBox(query)
        self.top_k.setRange(1, 100)
        self.top_k.setValue(10)
        self.rotate = QCheckBox("try four headings", query)
        self.rotate.setToolTip("The photo's heading is unknown: also try it turned 90/180/270°")
        self.rotate.setChecked(True)
        qform.addRow("Photo", self.photo_edit)
        # One row for both: QFormLayout misplaces a word-wrapped label below a tall one.
        photo_box = QWidget(query)
        photo_layout = QVBoxLayout(photo_box)
        photo_layout.setContentsMargins(0, 0, 0, 0)
        photo_layout.addWidget(self.thumbnail)
        photo_layout.addWidget(self.exif_info)
        qform.addRow(photo_box)
        qform.addRow("Description", self.text_edit)
        row = QHBoxLayout()
        row.addWidget(self.top_k)
        row.addWidget(self.rotate)
        qform.addRow("Candidates", row)
        self.use_region = QCheckBox("search region only", query)
        self.use_region.setObjectName("GeoBridgeUseRegion")
        self.use_region.setToolTip(
            "Search only the selected polygons of the active layer, else the last drawn region "
            "(draw one with the GeoBridge rectangle or polygon tool)"
        )
        qform.addRow(self.use_region)
        # The photo's own metadata and the geometric check: each can be switched off (an
        # analyst may distrust spoofed EXIF); the result's 'query' table says what was used.
        self.use_gps = QCheckBox("GPS limits the search to", query)
        self.use_gps.setObjectName("GeoBridgeUseGps")
        self.gps_radius = QSpinBox(query)
        self.gps_radius.setRange(0, 5000)
        self.gps_radius.setSuffix(" m")
        self.gps_radius.setSpecialValueText("from EXIF")
        self.gps_radius.setToolTip(
            "GPS uncertainty; 'from EXIF' takes the photo's accuracy tag, else 15 m. An oblique "
            "camera's look-ahead is added to it."
        )
        gps_row = QHBoxLayout()
        gps_row.addWidget(self.use_gps)
        gps_row.addWidget(self.gps_radius)
        qform.addRow(gps_row)
        self.use_altitude = QCheckBox("altitude picks the chip size", query)
        self.use_altitude.setObjectName("GeoBridgeUseAltitude")
        self.use_heading = QCheckBox("heading picks the rotation", query)
        self.use_heading.setObjectName("GeoBridgeUseHeading")
        qform.addRow(self.use_altitude)
        qform.addRow(self.use_heading)
        self.rerank = QCheckBox("re-rank and refine by image matching", query)
        self.rerank.setToolTip(
            "Match the top candidates to the indexed imagery (SIFT + RANSAC): a match moves a "
            "candidate up and gives the photo's footprint, centre and heading"
        )
        self.rerank.setObjectName("GeoBridgeRerank")
        qform.addRow(self.rerank)
        for box in (self.use_gps, self.use_altitude, self.use_heading, self.rerank):
            box.setChecked(True)
        layout.addWidget(query)

        buttons = QHBoxLayout()
        self.locate_button = QPushButton("Locate", body)
        self.locate_button.setObjectName("GeoBridgeLocate")
        self.locate_button.clicked.connect(self.locate)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.locate_button, 1)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status = QLabel("", body)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status)

        self.table = QTableWidget(0, len(COLUMNS), body)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(lambda row, _col: self.zoom_to_candidate(row))
        self.table.setMinimumHeight(200)
        layout.addWidget(self.table, 1)
        self.export_button = QPushButton("Export GeoPackage…", body)
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export_clicked)
        layout.addWidget(self.export_button)
        # A docked panel is often shorter than all of this: scroll rather than squeeze.
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)
        # A scroll area sizes its body from minimum heights, which word-wrapped labels
        # understate (Qt's heightForWidth is not consulted there): reserve their lines.
        lines = self.fontMetrics().lineSpacing()
        for label, n in ((self.exif_info, 3), (self.status, 3), (self.bundle_info, 3),
                         (self.index_info, 2)):  # fmt: skip
            label.setMinimumHeight(n * lines + 4)

    def _option_boxes(self) -> list[tuple[QCheckBox, str]]:
        return [(self.use_gps, "use_gps"), (self.use_altitude, "use_altitude"),
                (self.use_heading, "use_heading"), (self.rerank, "rerank")]  # fmt: skip

    # ------------------------------------------------------------ inputs

    def _bundle_changed(self, path: str) -> None:
        self._bundle_model_id = None
        if not path:
            self.bundle_info.setText("no model")
            return
        QgsSettings().setValue(SETTINGS + "bundle", path)
        try:
            from ..core.bundle import Bundle
            from ..core.encoders import Encoders

            # Manifest only: checksums of gigabyte encoders are checked by the task.
            bundle = Bundle.load(path, check_files=False)
            device = Encoders(bundle).device  # no session yet: the provider it would use
        except (UserError, ImportError, OSError, KeyError, ValueError, TypeError) as e:
            # an unreadable bundle or a missing dependency is the user's to fix: say why
            self.bundle_info.setText(f"<span style='color:#b00'>{e}</span>")
            return
        self._bundle_model_id = bundle.model_id
        self._bundle_summary = (
            f"<b>{bundle.name}</b><br>embedding {bundle.embed_dim}, {bundle.precision}, "
            f"towers {', '.join(bundle.towers)}"
        )
        self._show_device(device)
        self._index_changed(self.index_edit.filePath())

    def _show_device(self, device: str) -> None:
        self.bundle_info.setText(f"{self._bundle_summary}<br>device: <b>{device}</b>")

    def _index_changed(self, path: str) -> None:
        if not path:
            self.index_info.setText("no index (build one with Processing > GeoBridge)")
            return
        QgsSettings().setValue(SETTINGS + "index", path)
        try:
            manifest = json.loads((Path(path) / "index.json").read_text())
            text = (
                f"{manifest['count']:,} chips of {Path(manifest['raster']['source']).name}, "
                f"{manifest['grid']['region']}, model {manifest['model_name']}"
            )
        except (OSError, ValueError, KeyError, TypeError):
            self.index_info.setText(
                f"<span style='color:#b00'>{path}: not a GeoBridge index</span>"
            )
            return
        if self._bundle_model_id and manifest.get("model_id") != self._bundle_model_id:
            text += "<br><span style='color:#b00'>made by another model than the bundle's</span>"
        self.index_info.setText(text)

    def _photo_changed(self, path: str) -> None:
        self.photo_meta = None
        self.thumbnail.setPixmap(QPixmap())
        self.thumbnail.setText("drop a photo here" if not path else "reading…")
        self.exif_info.setText("")
        if not path:
            return
        task = PhotoInfoTask(path)
        task.succeeded.connect(lambda result, p=path: self._photo_read(p, result))
        task.failed.connect(lambda error, p=path: self._photo_failed(p, error))
        self.photo_task = task
        QgsApplication.taskManager().addTask(task)

    def _photo_read(self, path: str, result: tuple[Any, Any]) -> None:
        if path != self.photo_edit.filePath():
            return  # a newer photo was chosen meanwhile
        thumb, meta = result
        h, w = thumb.shape[:2]
        image = QImage(thumb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        self.thumbnail.setPixmap(QPixmap.fromImage(image))
        self.photo_meta = meta
        self.exif_info.setText(exif_summary(meta))

    def _photo_failed(self, path: str, error: str) -> None:
        if path == self.photo_edit.filePath():
            self.thumbnail.setText("cannot read this photo")
            self.exif_info.setText(error.splitlines()[-1])

    # drag and drop of an image file anywhere on the dock

    @staticmethod
    def _dropped_image(mime: Any) -> str | None:
        for url in mime.urls() if mime.hasUrls() else []:
            path = url.toLocalFile()
            if path and Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file():
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
            event.acceptProposedAction()
        else:
            event.ignore()

    # ------------------------------------------------------------ locate

    def is_busy(self) -> bool:
        return self.task is not None

    def _results_path(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = Path(QgsProcessingUtils.tempFolder())
        n = 0
        while (path := folder / f"geobridge-{stamp}{f'-{n}' if n else ''}.gpkg").exists():
            n += 1
        return path

    def locate(self) -> bool:
        """Start a LocateTask with the dock's inputs; False (and a message) when one is missing."""
        if self.task is not None:
            return False
        from .install_dialog import ensure_dependencies

        if not ensure_dependencies(self):  # first use: offers to install what is missing
            return False
        bundle = self.bundle_edit.filePath().strip()
        index = self.index_edit.filePath().strip()
        photo = self.photo_edit.filePath().strip()
        text = self.text_edit.toPlainText().strip()
        missing = [n for n, v in (("a model bundle", bundle), ("an index", index)) if not v]
        if not photo and not text:
            missing.append("a photo or a description")
        if missing:
            self._say("Give " + " and ".join(missing) + ".", error=True)
            return False
        region = None
        if self.use_region.isChecked():
            from .maptools import search_region

            region = search_region(self.iface)
            if region is None:
                self._say(
                    "Draw a search region or select polygons of the active layer, "
                    "or untick 'search region only'.",
                    error=True,
                )
                return False
        settings = QgsSettings()
        settings.setValue(SETTINGS + "top_k", self.top_k.value())
        for box, key in self._option_boxes():
            settings.setValue(SETTINGS + key, box.isChecked())
        settings.setValue(SETTINGS + "gps_radius_m", self.gps_radius.value())
        request = LocateRequest(
            bundle,
            index,
            photos=[photo] if photo else [],
            text=text or None,
            top_k=self.top_k.value(),
            rotations=defaults.ROTATIONS if self.rotate.isChecked() else (0,),
            region=region,
            rerank=self.rerank.isChecked(),
            refine=self.rerank.isChecked(),
            use_gps=self.use_gps.isChecked(),
            use_altitude=self.use_altitude.isChecked(),
            use_heading=self.use_heading.isChecked(),
            gps_radius_m=float(self.gps_radius.value()) or None,
            out=self._results_path(),
        )
        task = LocateTask(request, add_layers=True)
        task.progressChanged.connect(lambda v: self.progress.setValue(int(v)))
        task.succeeded.connect(self._located)
        task.failed.connect(self._failed)
        self.task = task
        self.locate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self._say("Locating… (the first run loads the model)")
        QgsApplication.taskManager().addTask(task)
        return True

    def build_index(self) -> bool:
        """Index the active raster layer with the Processing algorithm, as a background task
        (the algorithm already handles web layers, regions and CRSs: one path, not two)."""
        if self.task is not None:
            return False
        from .install_dialog import ensure_dependencies

        if not ensure_dependencies(self):
            return False
        layer = self.iface.activeLayer()
        bundle = self.bundle_edit.filePath().strip()
        if not isinstance(layer, QgsRasterLayer) or not bundle:
            self._say("Pick a model bundle and select the raster layer to index.", error=True)
            return False
        params: dict[str, Any] = {"INPUT": layer, "BUNDLE": bundle}
        if self.use_region.isChecked():
            from .maptools import search_region

            region = search_region(self.iface)
            if region is None:
                self._say("Draw a search region first, or untick 'search region only'.", error=True)
                return False
            wkt, crs = region
            box = QgsGeometry.fromWkt(wkt).boundingBox()
            params["EXTENT"] = (
                f"{box.xMinimum()},{box.xMaximum()},{box.yMinimum()},{box.yMaximum()} [{crs}]"
            )
        from ..index_folders import index_folder_for_layer

        # One folder per layer, region, grid and model: building again resumes (or finds) it.
        params["OUTPUT"] = str(index_folder_for_layer(layer, bundle, params.get("EXTENT")))
        if (Path(params["OUTPUT"]) / "index.json").is_file():
            self.index_edit.setFilePath(params["OUTPUT"])
            self._say(f"Index ready: {params['OUTPUT']} (built before from the same inputs)")
            return True
        alg = QgsApplication.processingRegistry().createAlgorithmById("geobridge:buildindex")
        # The context and feedback must outlive the task: they are kept on the dock.
        self._build_context = QgsProcessingContext()
        self._build_context.setProject(QgsProject.instance())
        self._build_feedback = QgsProcessingFeedback()
        self._build_feedback.progressChanged.connect(lambda v: self.progress.setValue(int(v)))
        task = QgsProcessingAlgRunnerTask(alg, params, self._build_context, self._build_feedback)
        task.executed.connect(self._indexed)
        self.task = task
        self.locate_button.setEnabled(False)
        self.build_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self._say(f"Indexing {layer.name()}… (see the plan in the log panel)")
        QgsApplication.taskManager().addTask(task)
        return True

    def _indexed(self, ok: bool, results: dict) -> None:
        cancelled = self._build_feedback.isCanceled()
        self._done()
        if ok and results.get("OUTPUT"):
            self.index_edit.setFilePath(str(results["OUTPUT"]))
            self.progress.setValue(100)
            self._say(f"Index ready: {results['OUTPUT']}")
        elif cancelled:
            self._say("Cancelled; building again resumes where it stopped.")
        else:
            self._say("Index build failed: see the GeoBridge and Processing logs.", error=True)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self) -> None:
        self.task = None
        self.locate_button.setEnabled(True)
        self.build_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _failed(self, error: str) -> None:
        cancelled = self.task is not None and self.task.cancelled_by_user
        self._done()
        self.progress.setValue(0)
        if cancelled:
            self._say("Cancelled.")
        else:
            QgsMessageLog.logMessage(error, "GeoBridge", Qgis.Warning)  # tracebacks of bugs
            self._say(error.strip().splitlines()[-1], error=True)

    def _located(self, outcome: LocateOutcome) -> None:
        self._done()
        self.outcome = outcome
        self.progress.setValue(100)
        self.export_button.setEnabled(True)
        if self._bundle_summary:  # the provider that really ran, after any fallback
            self._show_device(outcome.device)
        self.fill_table()
        q = outcome.queries[0]
        best = f", best score {q.candidates[0].score:.3f}" if q.candidates else ""
        if q.candidates and q.candidates[0].method == "refined":
            best += " (refined by matching the imagery)"
        priors = f" Priors used: {', '.join(q.priors_used)}." if q.priors_used else ""
        self._say(
            f"{len(q.candidates)} candidates for {q.label}{best} in "
            f"{outcome.seconds:.1f} s on {outcome.device}.{priors}"
        )
        if q.candidates:
            self.zoom_to_candidate(0)

    def fill_table(self) -> None:
        self.table.setRowCount(0)
        if self.outcome is None or not self.outcome.queries:
            return
        q = self.outcome.queries[0]
        gps = (q.photo_lon, q.photo_lat) if q.photo_lon is not None else None
        self.table.setRowCount(len(q.candidates))
        for row, c in enumerate(q.candidates):
            distance = haversine_m(c.lon, c.lat, *gps) if gps else None
            refined = c.method == "refined"
            method = c.method
            if c.match is not None and not c.match.ok:
                method = "match failed"
            values = [
                (str(c.rank), c.rank),
                (method, method),
                (f"{c.score:.4f}", c.score),
                (f"{c.probability:.1%}", c.probability),
                (f"{c.centre_sigma_m:.1f}" if refined else "–", c.centre_sigma_m),
                (f"{c.heading_deg:.0f}°" if refined else "–", c.heading_deg),
                (f"{distance:,.0f} m" if distance is not None else "–", distance),
                (f"{c.cosine:.4f}", c.cosine),
            ]
            for col, (text, value) in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, value)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if col == 1 and c.match is not None:
                    m = c.match
                    item.setToolTip(m.reason or f"{m.inliers} inliers, {m.spread:.0%} of the photo")
                self.table.setItem(row, col, item)

    def zoom_to_candidate(self, row: int) -> QgsRectangle | None:
        """Zoom the map to a candidate's footprint (1.5 chips around it) and flash it."""
        if self.outcome is None or not self.outcome.queries:
            return None
        candidates = self.outcome.queries[0].candidates
        if not 0 <= row < len(candidates):
            return None
        c = candidates[row]
        canvas = self.iface.mapCanvas()
        grid_crs = QgsCoordinateReferenceSystem.fromWkt(self.outcome.crs_wkt)
        h = c.size_m * 1.5
        rect = QgsRectangle(c.x - h, c.y - h, c.x + h, c.y + h)
        dest = canvas.mapSettings().destinationCrs()
        transform = QgsCoordinateTransform(grid_crs, dest, QgsProject.instance())
        extent = transform.transformBoundingBox(rect)
        canvas.setExtent(extent)
        canvas.refresh()
        footprint = QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in c.footprint]])
        canvas.flashGeometries([footprint], grid_crs, QColor(255, 0, 0, 200), QColor(255, 0, 0, 0))
        self.table.selectRow(row)
        return extent

    # ------------------------------------------------------------ export

    def export_results(self, path: Path | str) -> Path:
        """Copy the last results GeoPackage to `path`."""
        if self.outcome is None:
            raise RuntimeError("nothing to export yet")
        path = Path(path)
        if path.suffix.lower() != ".gpkg":
            path = path.with_suffix(".gpkg")
        shutil.copyfile(self.outcome.out, path)
        return path

    def _export_clicked(self) -> None:
        from .run_export import export_runs_dialog

        said = export_runs_dialog(self)  # the runs the analyst picks, styles included
        if said:
            self._say(*said)

    # ------------------------------------------------------------ misc

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00;" if error else "")
        if error:
            self.iface.messageBar().pushMessage("GeoBridge", text, level=Qgis.Warning)

    def shutdown(self) -> None:
        """Cancel what runs and stop listening to it (the plugin is unloading)."""
        for task in (self.task, self.photo_task):
            if task is None:
                continue
            # RuntimeError: the task already finished and QGIS deleted it.
            with contextlib.suppress(RuntimeError):
                for signal in (task.succeeded, task.failed, task.progressChanged):
                    with contextlib.suppress(TypeError):
                        signal.disconnect()
                task.cancel()
        self.task = self.photo_task = None
