"""The dock's results: the candidates of the last run in a table (click a row to zoom the map
to it), and the export of that run's GeoPackage.

Columns fit a narrow dock: short headers (their full meaning in the header's tooltip), text
elided at the right, and every cell's full text in its tooltip.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UserError
from ..core.geodesy import haversine_m
from ..core.service import LocateOutcome

# (header, tooltip) per column; the order is the table's API (tests and drivers read cells).
COLUMNS = [  # (header, name, what it says)
    ("#", "Rank", "Rank"),
    (
        "Method",
        "Method",
        "refined (an image match), metadata (the photo's own metadata), "
        "conflict (a match the metadata disagrees with) or unverified (a chip, no match)",
    ),
    ("Score", "Score", "The score the candidates are ranked by"),
    ("Prob.", "Probability", "Probability that this candidate is the place"),
    ("± m", "Uncertainty", "One-sigma uncertainty of the candidate's centre, metres"),
    ("Head.", "Heading", "Heading of a refined photo, degrees"),
    ("To GPS", "To the photo's GPS", "Distance to the position in the photo's EXIF"),
    ("Cos.", "Cosine", "Retrieval cosine: how alike the model finds photo and chip"),
]
ZOOM_CHIPS = 1.5  # the map shows this many chip sizes around a candidate


class CandidateTable(QTableWidget):
    """A table whose columns always fill its width: each gets its natural width (header and
    contents) when there is room, the extra shared out. In a narrow panel the refinement's
    heading and uncertainty columns are hidden first, then the others shrink with their text
    elided; every cell's tooltip holds its whole row."""

    MIN_COLUMN = 28  # pixels: room for an ellipsis and a digit or two
    HIDE_ORDER = (5, 4)  # heading, ± m: also in every cell's tooltip
    SHRINK_ORDER = (1, 6, 3, 2, 0)  # method, distance, probability, score, rank

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        header = self.horizontalHeader()
        for c in range(self.columnCount()):  # a hidden column measures nothing
            self.setColumnHidden(c, False)
        natural = [
            max(header.sectionSizeHint(c), self.sizeHintForColumn(c), self.MIN_COLUMN)
            for c in range(self.columnCount())
        ]
        available = self.viewport().width()
        shown = list(range(self.columnCount()))
        for c in self.HIDE_ORDER:
            if sum(natural[i] for i in shown) <= available:
                break
            shown.remove(c)
        widths = {c: natural[c] for c in shown}
        spare = available - sum(widths.values())
        if spare >= 0:
            total = sum(widths.values())
            widths = {c: w + spare * w // total for c, w in widths.items()}
        else:
            for c in self.SHRINK_ORDER:
                take = min(-spare, widths[c] - self.MIN_COLUMN)
                widths[c] -= take
                spare += take
        last = shown[-1]
        widths[last] += available - sum(widths.values())  # no gap from rounding
        for c in range(self.columnCount()):
            self.setColumnHidden(c, c not in widths)
            if c in widths:
                header.resizeSection(c, max(self.MIN_COLUMN, widths[c]))


class ResultsPanel(QWidget):
    """`table` (one row per candidate of the last run's first query; each cell's value in
    Qt.ItemDataRole.UserRole), `export_button`; `message(text, is_error)` reports an export."""

    message = pyqtSignal(str, bool)

    def __init__(self, iface: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.iface = iface
        self.outcome: LocateOutcome | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.table = CandidateTable(0, len(COLUMNS), self)
        for col, (header, _name, tip) in enumerate(COLUMNS):
            item = QTableWidgetItem(header)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, item)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(CandidateTable.MIN_COLUMN)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.cellClicked.connect(lambda row, _col: self.zoom_to_candidate(row))
        layout.addWidget(self.table, 1)
        self.export_button = QPushButton("Export GeoPackage…", self)
        self.export_button.setToolTip("Save a copy of this run's results GeoPackage")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export_clicked)
        layout.addWidget(self.export_button)

    def show_outcome(self, outcome: LocateOutcome | None) -> None:
        self.outcome = outcome
        self.export_button.setEnabled(outcome is not None and outcome.out is not None)
        self.fill_table()

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
            if getattr(c, "conflict", None):
                method = "conflict"  # a match the metadata disagrees with: see the tooltip
            elif c.method in ("retrieval", "reranked"):
                method = "unverified"  # no image match confirms this chip
            sigma = c.centre_sigma_m
            values = [
                (str(c.rank), c.rank),
                (method, method),
                (f"{c.score:.3f}" if c.method != "metadata" else "–", c.score),
                (f"{c.probability:.1%}", c.probability),
                (f"{sigma:.0f}" if sigma is not None else "–", sigma),
                (f"{c.heading_deg:.0f}°" if refined else "–", c.heading_deg),
                (f"{distance:,.0f} m" if distance is not None else "–", distance),
                (f"{c.cosine:.3f}", c.cosine),
            ]
            row_text = "\n".join(f"{COLUMNS[i][1]}: {t}" for i, (t, _v) in enumerate(values))
            if c.match is not None:
                m = c.match
                row_text += "\nMatch: " + (m.reason or m.summary())
            if getattr(c, "conflict", None):
                row_text += f"\nConflict: {c.conflict}"
            if getattr(c, "evidence", ""):
                row_text += f"\nEvidence: {c.evidence}"
            for col, (text, value) in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, value)
                align = Qt.AlignmentFlag.AlignLeft if col == 1 else Qt.AlignmentFlag.AlignRight
                item.setTextAlignment(align | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(row_text)
                self.table.setItem(row, col, item)
        self.table.fit_columns()

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
        h = c.size_m * ZOOM_CHIPS
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

    def export_results(self, path: Path | str) -> Path:
        """Copy the last run's results GeoPackage to `path` (".gpkg" added when missing)."""
        if self.outcome is None or self.outcome.out is None:
            raise UserError("nothing to export yet: locate a photo or a description first")
        path = Path(path)
        if path.suffix.lower() != ".gpkg":
            path = path.with_suffix(".gpkg")
        try:
            shutil.copyfile(self.outcome.out, path)
        except OSError as e:
            raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
        return path

    def _export_clicked(self) -> None:
        from .run_export import export_runs_dialog

        said = export_runs_dialog(self)  # the runs the analyst picks, styles included
        if said:
            self.message.emit(*said)
