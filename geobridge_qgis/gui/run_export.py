"""Export: the analyst ticks the runs to take (newest first, the newest ticked) and picks a
file; the runs' tables and styles are copied there (`layers.export_runs`)."""

from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..layers import export_runs, store_runs


class RunExportDialog(QDialog):
    """Public attributes are the widgets, so tests and scripts can drive it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export GeoBridge results")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Runs to export (with their styles):", self))
        self.runs = QListWidget(self)
        for n, run in enumerate(reversed(store_runs())):
            item = QListWidgetItem(
                f"{run.run_id}: {run.label}, {run.created.replace('T', ' ')}, "
                f"{run.candidates} candidates"
            )
            item.setData(Qt.ItemDataRole.UserRole, run.run_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if n == 0 else Qt.CheckState.Unchecked)
            self.runs.addItem(item)
        layout.addWidget(self.runs)
        self.file = QgsFileWidget(self)
        self.file.setStorageMode(QgsFileWidget.SaveFile)
        self.file.setFilter("GeoPackage (*.gpkg)")
        self.file.setDialogTitle("Export GeoBridge results")
        layout.addWidget(self.file)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def chosen(self) -> list[int]:
        items = (self.runs.item(i) for i in range(self.runs.count()))
        return [
            i.data(Qt.ItemDataRole.UserRole)
            for i in items
            if i.checkState() == Qt.CheckState.Checked
        ]

    def export(self) -> tuple[str, bool]:
        """(the line to show, whether it is an error)."""
        from ..core.errors import UserError

        path, run_ids = self.file.filePath().strip(), self.chosen()
        if not path or not run_ids:
            return "Choose a file and at least one run to export.", True
        try:
            out = export_runs(run_ids, Path(path))
        except (UserError, OSError, RuntimeError) as e:
            return f"{path}: cannot export ({e})", True
        return f"Exported {len(run_ids)} run(s) to {out}", False


def export_runs_dialog(parent: QWidget | None = None) -> tuple[str, bool] | None:
    """Ask which runs and where; None when the analyst cancels or there is nothing to take."""
    dialog = RunExportDialog(parent)
    if dialog.runs.count() == 0:
        return "No results kept for this project yet.", True
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.export()
