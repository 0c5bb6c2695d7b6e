"""The photo's thumbnail and what its EXIF says about where it was taken, read off the main
thread (a 20 MP JPEG takes a while to decode)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QImage, QPixmap
from qgis.PyQt.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..tasks import PhotoInfoTask
from .errors import user_message
from .jobs import run_task
from .widgets import wrapped_label

THUMBNAIL = (220, 140)  # pixels: a 4:3 drone photo fits a narrow dock at a glance
EMPTY_TEXT = "drop a photo here"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


def is_image(path: str) -> bool:
    """Whether `path` is an image file the dock takes (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file()


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


class PhotoPreview(QWidget):
    """`show_photo(path)` reads the photo in a task; `meta` is its PhotoMeta once read (None
    before, and for a photo that cannot be read)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.meta: Any = None
        self.path = ""
        self.task: PhotoInfoTask | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.thumbnail = QLabel(EMPTY_TEXT, self)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setMinimumHeight(THUMBNAIL[1] + 4)
        self.thumbnail.setStyleSheet("QLabel { border: 1px dashed #999; color: #777; }")
        self.exif_info = wrapped_label("", self, lines=2)
        self.exif_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.thumbnail)
        layout.addWidget(self.exif_info)

    def show_photo(self, path: str) -> None:
        self.path = path
        self.meta = None
        self.thumbnail.setPixmap(QPixmap())
        self.thumbnail.setText(EMPTY_TEXT if not path else "reading…")
        self.exif_info.setText("")
        if not path:
            return
        task = PhotoInfoTask(path, THUMBNAIL)
        task.succeeded.connect(lambda result, p=path: self._read(p, result))
        task.failed.connect(lambda _error, p=path, t=task: self._failed(p, t))
        self.task = task
        run_task(task)

    def _read(self, path: str, result: tuple[Any, Any]) -> None:
        if path != self.path:
            return  # a newer photo was chosen meanwhile
        self.task = None
        thumb, meta = result
        h, w = thumb.shape[:2]
        image = QImage(thumb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.thumbnail.setPixmap(QPixmap.fromImage(image))
        self.meta = meta
        self.exif_info.setText(exif_summary(meta))

    def _failed(self, path: str, task: PhotoInfoTask) -> None:
        if path != self.path:
            return
        self.task = None
        self.thumbnail.setText("cannot read this photo")
        error = task.exception
        self.exif_info.setText(user_message(error) if error is not None else (task.error or ""))

    def shutdown(self) -> None:
        """Stop listening to a photo still being read (the plugin is unloading)."""
        task, self.task = self.task, None
        if task is None:
            return
        # RuntimeError: the task already finished and QGIS deleted it.
        with contextlib.suppress(RuntimeError, TypeError):
            task.succeeded.disconnect()
            task.failed.disconnect()
        with contextlib.suppress(RuntimeError):
            task.cancel()
