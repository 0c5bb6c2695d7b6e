"""The dock's form: which model and index, the photo and/or description, the options; turned
into a `core.service.LocateRequest` by `locate_request`.

Only small JSON files (a bundle's manifest, an index's index.json) are read here, on the main
thread; the photo is read by `PhotoPreview` in a task. The form starts from what the analyst
used last (`settings`) and remembers each choice there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core import defaults
from ..core.errors import UserError
from ..core.service import LocateRequest
from ..paths import IMAGE_FILTER
from .errors import user_message
from .photo_preview import PhotoPreview
from .widgets import collapsible_group, wrapped_label

RED = "color:#b00"
NO_INDEX = "no index yet: select a raster layer and build one"
MODEL_TITLE = "Model and index"


def index_summary(path: str) -> tuple[str, str | None, int]:
    """(one line about an index folder, the model id that made it, its chip count);
    UserError when the folder holds no readable GeoBridge index."""
    try:
        manifest = json.loads((Path(path) / "index.json").read_text())
        count = int(manifest["count"])
        text = (
            f"{count:,} chips of {Path(manifest['raster']['source']).name}, "
            f"{manifest['grid']['region']}, model {manifest['model_name']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a GeoBridge index") from None
    return text, manifest.get("model_id"), count


def _file_widget(parent: QWidget, mode: Any, title: str, root: str) -> QgsFileWidget:
    widget = QgsFileWidget(parent)
    widget.setStorageMode(mode)
    widget.setDialogTitle(title)
    widget.setDefaultRoot(root)
    return widget


class LocateForm(QWidget):
    """Public widgets (a driver sets them as a user would): `bundle_edit`, `index_edit`,
    `build_button`, `photo_edit`, `text_edit`, `top_k`, `rotate`, `use_region`, `use_gps`,
    `gps_radius`, `use_altitude`, `use_heading`, `rerank`; read-only: `bundle_info`,
    `index_info`, `preview` (thumbnail, EXIF)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bundle_model_id: str | None = None
        self.bundle_name = ""
        self.bundle_summary = ""
        self.index_chips: int | None = None
        self.index_model_id: str | None = None
        self._model_title = MODEL_TITLE
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._model_group())
        layout.addWidget(self._query_group())
        layout.addWidget(self._priors_group())
        layout.addStretch(1)
        self.load_settings()
        # Set up once, the model and index need no room: the group opens only when one of
        # them needs the user (missing, unreadable, or made by another model).
        self.model_box.setCollapsed(self.model_ready())

    # ------------------------------------------------------------ layout

    def _model_group(self) -> QGroupBox:
        box = collapsible_group(MODEL_TITLE, self, expanded=True)
        self.model_box = box
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.bundle_edit = _file_widget(
            box,
            QgsFileWidget.StorageMode.GetDirectory,
            "GeoBridge model bundle folder",
            settings.bundles_folder(),
        )
        self.bundle_edit.setToolTip("A folder made by model_export: manifest.json and ONNX towers")
        self.bundle_info = wrapped_label("no model", box, lines=2)
        self.index_edit = _file_widget(
            box,
            QgsFileWidget.StorageMode.GetDirectory,
            "GeoBridge index folder",
            settings.index_cache_folder(),
        )
        self.index_info = wrapped_label(NO_INDEX, box, lines=2)
        self.build_button = QPushButton("Build index of the active layer", box)
        self.build_button.setToolTip(
            "Runs Processing > GeoBridge > Build reference index in the background over the "
            "active raster layer, with the chip sizes of the GeoBridge settings (the search "
            "region's bounding box when 'search region only' is ticked; a web layer always "
            "needs one)."
        )
        form.addRow("Bundle", self.bundle_edit)
        form.addRow(self.bundle_info)
        form.addRow("Index", self.index_edit)
        form.addRow(self.index_info)
        form.addRow(self.build_button)
        self.bundle_edit.fileChanged.connect(self._bundle_changed)
        self.index_edit.fileChanged.connect(self._index_changed)
        return box

    def _query_group(self) -> QWidget:
        box = QWidget(self)  # the tab is already called "Query": no frame of its own
        form = QFormLayout(box)
        form.setContentsMargins(4, 4, 4, 4)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.photo_edit = _file_widget(
            box, QgsFileWidget.StorageMode.GetFile, "Drone photo", settings.photo_folder()
        )
        self.photo_edit.setFilter(IMAGE_FILTER)
        self.preview = PhotoPreview(box)
        self.text_edit = QPlainTextEdit(box)
        self.text_edit.setPlaceholderText("optional: e.g. 'a church beside a roundabout'")
        self.text_edit.setToolTip(
            "Describe the place, e.g. 'a church beside a roundabout, red-roofed houses to the "
            "north'; with a photo, the description steers its search"
        )
        self.text_edit.setMaximumHeight(3 * self.fontMetrics().lineSpacing() + 12)
        self.top_k = QSpinBox(box)
        self.top_k.setRange(1, settings.MAX_TOP_K)
        self.top_k.setToolTip("How many candidate places to return")
        self.rotate = QCheckBox("try four headings", box)
        self.rotate.setToolTip("The photo's heading is unknown: also try it turned 90/180/270°")
        self.use_region = QCheckBox("search region only", box)
        self.use_region.setObjectName("GeoBridgeUseRegion")
        self.use_region.setToolTip(
            "Search only the selected polygons of the active layer, else the last drawn region "
            "(draw one with the GeoBridge rectangle or polygon tool)"
        )
        form.addRow("Photo", self.photo_edit)
        form.addRow(self.preview)
        form.addRow("Description", self.text_edit)
        form.addRow("Candidates", self.top_k)
        form.addRow(self.rotate)
        form.addRow(self.use_region)
        self.photo_edit.fileChanged.connect(self._photo_changed)
        return box

    def _priors_group(self) -> QGroupBox:
        # The photo's own metadata and the geometric check: each can be switched off (an
        # analyst may distrust spoofed EXIF); the result's 'query' table says what was used.
        box = collapsible_group(
            "Priors and re-ranking", self, settings.priors_expanded(), settings.set_priors_expanded
        )
        self.priors_box = box
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.use_gps = QCheckBox("GPS limits the search", box)
        self.use_gps.setObjectName("GeoBridgeUseGps")
        self.use_gps.setToolTip("Search only near the position in the photo's EXIF/XMP")
        self.gps_radius = QSpinBox(box)
        self.gps_radius.setRange(0, settings.MAX_GPS_RADIUS_M)
        self.gps_radius.setSuffix(" m")
        self.gps_radius.setSpecialValueText("from EXIF")
        self.gps_radius.setToolTip(
            "GPS uncertainty; 'from EXIF' takes the photo's accuracy tag, else "
            f"{defaults.GPS_RADIUS_M:g} m. An oblique camera's look-ahead is added to it."
        )
        self.use_altitude = QCheckBox("altitude picks the chip size", box)
        self.use_altitude.setObjectName("GeoBridgeUseAltitude")
        self.use_altitude.setToolTip("The photo's height above ground and focal length")
        self.use_heading = QCheckBox("heading picks the rotation", box)
        self.use_heading.setObjectName("GeoBridgeUseHeading")
        self.use_heading.setToolTip("The compass heading in the photo's metadata")
        self.rerank = QCheckBox("re-rank by image matching", box)
        self.rerank.setObjectName("GeoBridgeRerank")
        self.rerank.setToolTip(
            f"Match the top {defaults.RERANK_TOP} candidates to the indexed imagery (SIFT + "
            "RANSAC): a match moves a candidate up and gives the photo's footprint, centre "
            "and heading"
        )
        form.addRow(self.use_gps)
        form.addRow("GPS radius", self.gps_radius)
        form.addRow(self.use_altitude)
        form.addRow(self.use_heading)
        form.addRow(self.rerank)
        return box

    # ------------------------------------------------------------ settings

    def load_settings(self) -> None:
        self.bundle_edit.setFilePath(settings.default_bundle())
        self.index_edit.setFilePath(settings.last_index())
        self.set_options(settings.dock_options())

    def options(self) -> settings.DockOptions:
        return settings.DockOptions(
            top_k=self.top_k.value(),
            rotate=self.rotate.isChecked(),
            use_gps=self.use_gps.isChecked(),
            use_altitude=self.use_altitude.isChecked(),
            use_heading=self.use_heading.isChecked(),
            rerank=self.rerank.isChecked(),
            gps_radius_m=self.gps_radius.value(),
        )

    def set_options(self, options: settings.DockOptions) -> None:
        self.top_k.setValue(options.top_k)
        self.rotate.setChecked(options.rotate)
        self.use_gps.setChecked(options.use_gps)
        self.use_altitude.setChecked(options.use_altitude)
        self.use_heading.setChecked(options.use_heading)
        self.rerank.setChecked(options.rerank)
        self.gps_radius.setValue(options.gps_radius_m)

    # ------------------------------------------------------------ the request

    def locate_request(self, out: Path, region: Any = None) -> LocateRequest:
        """The request for the form's inputs, results to `out`, searching `region` ((WKT, CRS)
        or None). UserError naming what is missing."""
        bundle = self.bundle_edit.filePath().strip()
        index = self.index_edit.filePath().strip()
        photo = self.photo_edit.filePath().strip()
        text = self.text_edit.toPlainText().strip()
        missing = [n for n, v in (("a model bundle", bundle), ("an index", index)) if not v]
        if not photo and not text:
            missing.append("a photo or a description")
        if missing:
            raise UserError("Give " + " and ".join(missing) + ".")
        options = self.options()
        return LocateRequest(
            bundle,
            index,
            photos=[photo] if photo else [],
            text=text or None,
            top_k=options.top_k,
            rotations=defaults.ROTATIONS if options.rotate else (0,),
            region=region,
            rerank=options.rerank,
            refine=options.rerank,
            use_gps=options.use_gps,
            use_altitude=options.use_altitude,
            use_heading=options.use_heading,
            gps_radius_m=float(options.gps_radius_m) or None,
            out=out,
        )

    # ------------------------------------------------------------ inputs

    def model_ready(self) -> bool:
        """Whether the bundle and the index are set, readable and made for each other."""
        return bool(
            self.bundle_model_id
            and self.index_chips is not None
            and self.index_model_id == self.bundle_model_id
        )

    def _model_changed(self) -> None:
        """The group's title says what is loaded, so that it can stay closed."""
        if self.model_ready():
            self._model_title = f"{MODEL_TITLE}: {self.bundle_name}, {self.index_chips:,} chips"
        else:
            self._model_title = MODEL_TITLE
            self.model_box.setCollapsed(False)
        self._fit_model_title()

    def _fit_model_title(self) -> None:
        # A group box is at least as wide as its title: elided to the form's width, a long
        # model name cannot push the form wider than a narrow panel.
        room = max(self.width() - 4 * self.fontMetrics().averageCharWidth() - 24, 40)
        title = self.fontMetrics().elidedText(self._model_title, Qt.TextElideMode.ElideRight, room)
        self.model_box.setTitle(title)
        self.model_box.setToolTip(self._model_title if title != self._model_title else "")

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit_model_title()

    def _bundle_changed(self, path: str) -> None:
        self.bundle_model_id = None
        self.bundle_summary = ""
        try:
            self._read_bundle(path)
        finally:
            self._model_changed()

    def _read_bundle(self, path: str) -> None:
        if not path:
            self.bundle_info.setText("no model")
            return
        settings.set_last_bundle(path)
        try:
            from ..core.bundle import Bundle
            from ..core.encoders import Encoders

            # Manifest only: checksums of gigabyte encoders are checked by the task.
            bundle = Bundle.load(path, check_files=False)
            device = Encoders(bundle).device  # no session yet: the provider it would use
        except Exception as e:  # shown in the form: the user picks another folder
            self.bundle_info.setText(f"<span style='{RED}'>{user_message(e)}</span>")
            return
        self.bundle_model_id = bundle.model_id
        self.bundle_name = bundle.name
        self.bundle_summary = (
            f"<b>{bundle.name}</b> · embedding {bundle.embed_dim}, {bundle.precision}, "
            f"towers {', '.join(bundle.towers)}"
        )
        self.show_device(device)
        self._index_changed(self.index_edit.filePath())

    def show_device(self, device: str) -> None:
        """Say which onnxruntime provider runs the model (after a run: the one that did)."""
        if self.bundle_summary:
            self.bundle_info.setText(f"{self.bundle_summary} · device: <b>{device}</b>")

    def _index_changed(self, path: str) -> None:
        self.index_chips = None
        self.index_model_id = None
        try:
            self._read_index(path)
        finally:
            self._model_changed()

    def _read_index(self, path: str) -> None:
        if not path:
            self.index_info.setText(NO_INDEX)
            return
        settings.set_last_index(path)
        try:
            text, model_id, chips = index_summary(path)
        except UserError as e:
            self.index_info.setText(f"<span style='{RED}'>{e}</span>")
            return
        self.index_chips, self.index_model_id = chips, model_id
        if self.bundle_model_id and model_id != self.bundle_model_id:
            text += f"<br><span style='{RED}'>made by another model than the bundle's</span>"
        self.index_info.setText(text)

    def _photo_changed(self, path: str) -> None:
        if path:
            folder = str(Path(path).parent)
            settings.set_photo_folder(folder)
            self.photo_edit.setDefaultRoot(folder)  # the dialog opens there next time
        self.preview.show_photo(path)
