"""The first run: with no model bundle chosen, the dock explains what a bundle is and offers to
download the demo model and world.

`offer(dock)` puts a `FirstRunPanel` at the top of the dock; it shows itself only while the
dock's bundle field is empty. Its button starts a `DownloadTask` (the network is touched only
then) that installs the zip at the `geobridge/download_url` setting into the profile
(`<profile>/geobridge/models/demo/`) through `core.download.install`: progress, cancel, sha256
check, nothing half-installed. On success the dock's bundle field is set to the new bundle,
the bundles folder setting points at the models folder when it was unset, and the demo world's
imagery is added to the project, ready for "Build index of the active layer".
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..core import download
from ..core.errors import UserError
from ..tasks import EngineTask, describe_error

EXPORT_HELP_URL = (
    "https://github.com/geobridge-qgis/geobridge-qgis#export-your-own-geobridge-weights"
)
DEMO_IMAGERY = "GeoBridge demo world"


def models_folder() -> Path:
    """Where downloaded bundles go: `geobridge/models/` in the user's QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "geobridge" / "models"


def demo_folder() -> Path:
    return models_folder() / "demo"


class DownloadTask(EngineTask):
    """Download and install a zipped bundle; `result` is a `core.download.Installed`.

    It runs on QGIS's task thread, not the engine's: a download needs neither the engine's
    thread-bound state nor its packages (the first run may come before they are installed)."""

    def __init__(self, url: str, target: Path | str, sha256: str | None = None):
        super().__init__(f"GeoBridge: download {url.rsplit('/', 1)[-1] or url}")
        self.url = url
        self.target = Path(target)
        self.sha256 = sha256
        self.done = self.total = 0  # bytes, read by the panel on progressChanged

    def _work(self) -> download.Installed:
        return download.install(
            self.url, self.target, self.sha256, progress=self._bytes, cancelled=self.isCanceled
        )

    def _bytes(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if total:
            self.setProgress(100.0 * done / total)

    def run(self) -> bool:
        try:
            self.result = self._work()
            return True
        except download.Cancelled:
            self.error, self.cancelled_by_user = "cancelled", True
        except UserError as e:
            self.error = str(e)
        except Exception as e:  # a bug: keep its traceback for the log
            self.error, self.cancelled_by_user = describe_error(e)
        return False


class FirstRunPanel(QGroupBox):
    """What a bundle is, "Get the demo model and world" with progress and cancel, and where
    real weights come from. Public attributes are the widgets, for tests and scripts."""

    def __init__(self, dock: Any, parent: QWidget | None = None):
        super().__init__("Get started", parent)
        self.setObjectName("GeoBridgeFirstRun")
        self.dock = dock
        self.task: DownloadTask | None = None
        self.target: Path | None = None  # None: demo_folder(), read when the button is pressed
        self._on_destroyed: Any = None
        layout = QVBoxLayout(self)
        self.intro = QLabel(
            "<b>No model yet.</b> GeoBridge needs a <i>model bundle</i>: a folder holding the "
            "model's encoders (ONNX files for drone photos, satellite imagery and text) and a "
            "manifest.json. Choose one under <i>Bundle</i>, or download the small demo model "
            "with its synthetic world (about 60 MB) to try GeoBridge. For real GeoBridge "
            f"weights, <a href='{EXPORT_HELP_URL}'>export your own bundle</a>.",
            self,
        )
        self.intro.setWordWrap(True)
        self.intro.setTextFormat(Qt.TextFormat.RichText)
        self.intro.setOpenExternalLinks(True)
        self.intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        layout.addWidget(self.intro)
        self.get_button = QPushButton("Get the demo model and world", self)
        self.get_button.setObjectName("GeoBridgeGetDemo")
        self.get_button.clicked.connect(self.start)
        layout.addWidget(self.get_button)
        row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self._running(False)
        dock.bundle_edit.fileChanged.connect(self._bundle_changed)
        self._bundle_changed(dock.bundle_edit.filePath())

    def _bundle_changed(self, path: str) -> None:
        # Shown only while there is nothing to work with (or a download is under way).
        self.setVisible(not path.strip() or self.task is not None)

    def _running(self, running: bool) -> None:
        self.get_button.setEnabled(not running)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)

    def start(self) -> DownloadTask | None:
        """Start the download (the only place the network is touched); the task."""
        if self.task is not None:
            return None
        url = settings.download_url()
        target = self.target or demo_folder()
        task = DownloadTask(url, target)
        task.progressChanged.connect(self._progress)
        task.succeeded.connect(self._installed)
        task.failed.connect(self._failed)
        # The dock may go (the plugin unloads, QGIS closes) mid-download: stop the download
        # then, so that nothing is left half-way.
        self._on_destroyed = self.destroyed.connect(functools.partial(_cancel_quietly, task))
        self.task = task
        self.progress.setValue(0)
        self._running(True)
        self._say(f"Downloading {url} …")
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self.cancel_button.setEnabled(False)
            self.task.cancel()

    def _progress(self, percent: float) -> None:
        task = self.task
        if task is None:
            return
        self.progress.setValue(int(percent))
        if task.total:
            self.progress.setFormat(f"{task.done / 1e6:.1f} of {task.total / 1e6:.1f} MB")

    def _task_ended(self) -> None:
        self.task = None
        if self._on_destroyed is not None:
            self.destroyed.disconnect(self._on_destroyed)
            self._on_destroyed = None

    def _installed(self, installed: download.Installed) -> None:
        self._task_ended()
        self._running(False)
        if not settings.bundles_folder():
            settings.set_bundles_folder(str(installed.folder.parent))
            self.dock.bundle_edit.setDefaultRoot(str(installed.folder.parent))
        layer = add_demo_imagery(installed.folder, getattr(self.dock, "iface", None))
        text = f"Demo model installed in {installed.folder}."
        if layer is not None:
            text += (
                f" Its imagery ({layer.name()}) is on the map: build an index of it, then pick "
                "a photo from world/drone/."
            )
        self._say(text)
        # Last: the bundle field's change hides this panel and the dock loads the bundle.
        self.dock.bundle_edit.setFilePath(str(installed.bundle))

    def _failed(self, error: str) -> None:
        cancelled = self.task is not None and self.task.cancelled_by_user
        self._task_ended()
        self._running(False)
        if cancelled:
            self._say("Cancelled; nothing was installed.")
            return
        QgsMessageLog.logMessage(error, "GeoBridge", Qgis.MessageLevel.Warning)
        self._say(error.strip().splitlines()[-1], error=True)
        self._bundle_changed(self.dock.bundle_edit.filePath())

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00;" if error else "")


def _cancel_quietly(task: DownloadTask, *_: Any) -> None:
    # Called while the panel is being destroyed: an exception here would abort QGIS.
    with contextlib.suppress(Exception):
        task.cancel()


def add_demo_imagery(folder: Path, iface: Any = None) -> QgsRasterLayer | None:
    """Add the demo world's satellite raster to the project (once) and make it the active
    layer; the layer, or None where the download has no world."""
    tif = folder / "world" / "satellite.tif"
    if not tif.is_file():
        return None
    project = QgsProject.instance()
    for layer in project.mapLayers().values():
        if Path(layer.source()) == tif:
            return layer
    layer = QgsRasterLayer(str(tif), DEMO_IMAGERY)
    if not layer.isValid():
        return None
    project.addMapLayer(layer)
    if iface is not None:
        iface.setActiveLayer(layer)
    return layer


def offer(dock: Any) -> FirstRunPanel:
    """Put the first-run panel at the top of the dock (it hides itself while a bundle is set)."""
    body = dock.widget()
    if isinstance(body, QScrollArea):
        body = body.widget()
    panel = FirstRunPanel(dock, body)
    body.layout().insertWidget(0, panel)
    dock.first_run = panel
    return panel
