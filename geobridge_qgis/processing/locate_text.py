"""Processing > GeoBridge > Locate by description."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterString,
)

from .locate_base import LocateAlgorithm


class LocateTextAlgorithm(LocateAlgorithm):
    def name(self) -> str:
        return "locatetext"

    def displayName(self) -> str:
        return "Locate by description"

    def shortHelpString(self) -> str:
        return (
            "Finds places that match a description, e.g. 'a church beside a roundabout, "
            "red-roofed houses to the north': the text is embedded with the bundle's text "
            "encoder and compared with every chip of the index.\n\n"
            "Output: a GeoPackage with 'candidates', 'footprints', 'query' and a heat map, "
            "added to a group of their own (the description's start and the time) in "
            "'GeoBridge results'."
        )

    def initAlgorithm(self, config: dict | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterString(self.TEXT, "Description of the place", multiLine=True)
        )
        self._common_tail()

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        text = (self.parameterAsString(parameters, self.TEXT, context) or "").strip()
        if not text:
            raise QgsProcessingException("TEXT: describe the place to look for")
        return self._locate(parameters, context, feedback, [], text)
