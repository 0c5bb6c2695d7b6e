"""GeoBridge's page in QGIS's Options dialog (Settings > Options > GeoBridge).

The page is built from `OPTIONS`, one row per key of `..settings`: (key, label, kind, getter,
setter, the code that reads it). A new setting is one more row. `kind` says how the text in the
field is read and checked (`PARSERS`); the setter writes it. Only fields the user changed are
written (an untouched default stays a default, so a later version's default still applies); an
emptied field removes its key (back to the default). A value that does not parse, or that the
setter refuses, is reported on the page and in the message bar, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qgis.core import Qgis, QgsSettings
from qgis.gui import QgsFileWidget, QgsOptionsPageWidget, QgsOptionsWidgetFactory
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from .. import settings
from ..paths import ICON


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    kind: str  # a key of PARSERS
    getter: Callable[[], Any]
    setter: Callable[[Any], None]
    read_by: str  # the code that reads the setting, shown as the field's tooltip


OPTIONS: tuple[Option, ...] = (
    Option(settings.BUNDLES_FOLDER, "Bundles folder", "folder", settings.bundles_folder,
           settings.set_bundles_folder, "The dock's bundle picker starts here."),
    Option(settings.INDEX_CACHE_FOLDER, "Index cache folder", "folder",
           settings.index_cache_folder, settings.set_index_cache_folder,
           "The dock's index picker starts here and its 'Build index' writes here "
           "(empty: QGIS's temporary folder)."),
    Option(settings.PROVIDERS, "Execution providers", "names", settings.provider_names,
           settings.set_providers, "The encoders of the dock and of Processing try these "
           "onnxruntime providers in order: tensorrt, cuda, cpu, coreml, directml, openvino."),
    Option(settings.BATCH_SIZE, "Batch size", "count", settings.batch_size,
           settings.set_batch_size, "Chips per encoder batch, for the dock and Processing."),
    Option(settings.CHIP_SIZES, "Chip sizes (m)", "lengths", settings.chip_sizes,
           settings.set_chip_sizes, "The default chip sizes of Processing's "
           "'Build reference index' (and so of the dock's 'Build index')."),
    Option(settings.EXACT_MAX_CHIPS, "Exact search up to (chips)", "count",
           settings.exact_max_chips, settings.set_exact_max_chips, "Processing's and the "
           "dock's index builds make an exact index up to this many chips, an approximate "
           "(HNSW) one above."),
    Option(settings.BASEMAP_URL, "Basemap XYZ URL", "xyz", settings.basemap_url,
           settings.set_basemap_url, "The 'Add satellite basemap' action's tiles."),
    Option(settings.BASEMAP_NAME, "Basemap layer name", "text", settings.basemap_name,
           settings.set_basemap_name, "The 'Add satellite basemap' action's layer name."),
    Option(settings.DOWNLOAD_URL, "Demo download URL", "url", settings.download_url,
           settings.set_download_url, "The dock's 'Get the demo model and world' downloads "
           "this zip and checks it against <URL>.sha256."),
)  # fmt: skip


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise ValueError(f"{text!r}: must be at least 1")
    return n


def _lengths(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a list of numbers, e.g. 100,150") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"{text!r}: sizes must be positive metres, e.g. 100,150")
    return values


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("name at least one, e.g. cuda,cpu")
    return names


def _url(text: str) -> str:
    if not text.lower().startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def _xyz(text: str) -> str:
    if not all(f"{{{c}}}" in text for c in "xyz"):
        raise ValueError(f"{text!r} lacks {{x}}, {{y}} or {{z}}")
    return _url(text)


PARSERS: dict[str, Callable[[str], Any]] = {
    "folder": str,
    "text": str,
    "count": _count,
    "lengths": _lengths,
    "names": _names,
    "url": _url,
    "xyz": _xyz,
}


def as_text(value: Any) -> str:
    """A setting's value as the page shows it."""
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


class GeoBridgeOptionsPage(QgsOptionsPageWidget):
    """One field per `OPTIONS` row; `fields[key]` is its widget, `message` the last refusal."""

    def __init__(self, parent: QWidget | None = None, options: Sequence[Option] = OPTIONS):
        super().__init__(parent)
        self.setObjectName("GeoBridgeOptionsPage")
        self.options = tuple(options)
        self.fields: dict[str, QLineEdit | QgsFileWidget] = {}
        self.shown: dict[str, str] = {}
        layout = QVBoxLayout(self)
        form = QFormLayout()
        for option in self.options:
            if option.kind == "folder":
                field = QgsFileWidget(self)
                field.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
            else:
                field = QLineEdit(self)
            field.setObjectName(option.key)
            field.setToolTip(f"{option.read_by}\nEmpty: the default. QgsSettings {option.key}")
            text = as_text(option.getter())
            _set_text(field, text)
            self.shown[option.key] = text
            self.fields[option.key] = field
            form.addRow(option.label, field)
        layout.addLayout(form)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00;")
        layout.addWidget(self.message)
        layout.addStretch(1)

    def changes(self) -> dict[Option, Any]:
        """{option: parsed value or None (back to the default)} for every edited field;
        ValueError (naming the fields) when any does not parse."""
        out: dict[Option, Any] = {}
        errors = []
        for option in self.options:
            text = _text(self.fields[option.key]).strip()
            if text == self.shown[option.key].strip():
                continue
            try:
                out[option] = PARSERS[option.kind](text) if text else None
            except ValueError as e:
                errors.append(f"{option.label}: {e}")
        if errors:
            raise ValueError("; ".join(errors))
        return out

    def isValid(self) -> bool:  # QGIS 3.24+ asks before apply(): the dialog stays open
        try:
            self.changes()
        except ValueError as e:
            self._refuse(str(e), bar=False)
            return False
        self.message.setText("")
        return True

    def apply(self) -> None:
        """Write the edited fields through settings.py's setters, all or none."""
        try:
            changes = self.changes()
        except ValueError as e:
            self._refuse(str(e))
            return
        qs = QgsSettings()
        before = {o.key: qs.value(o.key) for o in changes}
        try:
            for option, value in changes.items():
                if value is None:
                    qs.remove(option.key)
                else:
                    option.setter(value)
        except ValueError as e:  # a setter's own check: undo what was written before it
            for key, value in before.items():
                if value is None:
                    qs.remove(key)
                else:
                    qs.setValue(key, value)
            self._refuse(f"{option.label}: {e}")
            return
        self.message.setText("")
        for option in changes:
            self.shown[option.key] = as_text(option.getter())
            _set_text(self.fields[option.key], self.shown[option.key])

    def _refuse(self, text: str, bar: bool = True) -> None:
        text = f"GeoBridge settings not saved: {text}"
        self.message.setText(text)
        if bar:  # QGIS 3.22 closes the dialog after apply(): say it where it stays visible
            from qgis.utils import iface

            if iface is not None:
                iface.messageBar().pushMessage("GeoBridge", text, level=Qgis.MessageLevel.Warning)


class GeoBridgeOptionsFactory(QgsOptionsWidgetFactory):
    def __init__(self) -> None:
        super().__init__("GeoBridge", QIcon(str(ICON)))

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def createWidget(self, parent: QWidget | None = None) -> GeoBridgeOptionsPage:
        return GeoBridgeOptionsPage(parent)


def _text(field: QLineEdit | QgsFileWidget) -> str:
    return field.filePath() if isinstance(field, QgsFileWidget) else field.text()


def _set_text(field: QLineEdit | QgsFileWidget, text: str) -> None:
    if isinstance(field, QgsFileWidget):
        field.setFilePath(text)
    else:
        field.setText(text)
