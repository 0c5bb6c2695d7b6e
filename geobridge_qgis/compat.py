"""Spellings that differ between the oldest QGIS this plugin supports (3.22, Qt 5) and QGIS 4
(Qt 6), in one place.

Everything else is written the way both accept: scoped enums (`Qt.MouseButton.LeftButton`),
`exec()`, `qgis.PyQt` imports. Field types are the exception: QgsField takes `QMetaType.Type`
from QGIS 3.38 on and QGIS 4 only that, while QGIS 3.22 takes only `QVariant.Type` (which
Qt 6 no longer has), so the type is chosen by the running QGIS's version.
"""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis

METATYPE_FIELDS = Qgis.QGIS_VERSION_INT >= 33800

# QVariant's names -> QMetaType's names.
_METATYPE_NAMES = {
    "String": "QString",
    "Int": "Int",
    "LongLong": "LongLong",
    "Double": "Double",
    "Bool": "Bool",
    "Date": "QDate",
    "DateTime": "QDateTime",
}


def field_type(name: str) -> Any:
    """The `type` argument of QgsField for a field of `name` ("String", "Int", "LongLong",
    "Double", "Bool", "Date", "DateTime") in the running QGIS."""
    if name not in _METATYPE_NAMES:
        raise ValueError(f"unknown field type {name!r}")
    if METATYPE_FIELDS:
        from qgis.PyQt.QtCore import QMetaType

        return getattr(QMetaType.Type, _METATYPE_NAMES[name])
    from qgis.PyQt.QtCore import QVariant

    return getattr(QVariant, name)  # qt5-only: QGIS before 3.38 takes nothing else
