"""The "GeoBridge" Processing provider (id `geobridge`)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import ICON
from .build_index import BuildIndexAlgorithm
from .locate_photos import LocatePhotosAlgorithm
from .locate_text import LocateTextAlgorithm

PROVIDER_ID = "geobridge"


class GeoBridgeProvider(QgsProcessingProvider):
    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "GeoBridge"

    def longName(self) -> str:
        return "GeoBridge: locate drone photos and descriptions on satellite imagery"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:
        for alg in (BuildIndexAlgorithm(), LocatePhotosAlgorithm(), LocateTextAlgorithm()):
            self.addAlgorithm(alg)
