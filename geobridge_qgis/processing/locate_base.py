"""What the two Locate algorithms share: the bundle, index, candidate count and output
parameters, running the locate service, and loading the results as one query group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core import defaults
from .base import GeoBridgeAlgorithm, bundle_parameter, index_parameter
from .outputs import StyleResult, load_on_completion

MAX_TOP_K = 1000  # a batch run may want many; the dock offers fewer


class LocateAlgorithm(GeoBridgeAlgorithm):
    BUNDLE = "BUNDLE"
    INDEX = "INDEX"
    TEXT = "TEXT"
    TOP_K = "TOP_K"
    OUTPUT = "OUTPUT"
    CANDIDATES = "CANDIDATES"
    FOOTPRINTS = "FOOTPRINTS"
    QUERIES = "QUERIES"

    def _common_tail(self) -> None:
        """The parameters after each algorithm's own: model, index, count, output."""
        self.addParameter(bundle_parameter(self.BUNDLE))
        self.addParameter(index_parameter(self.INDEX))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                "Candidates per query",
                QgsProcessingParameterNumber.Type.Integer,
                defaults.TOP_K,
                minValue=1,
                maxValue=MAX_TOP_K,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, "Results GeoPackage", "GeoPackage (*.gpkg *.GPKG)"
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.CANDIDATES, "Candidates", QgsProcessing.SourceType.TypeVectorPoint
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.FOOTPRINTS,
                "Candidate footprints",
                QgsProcessing.SourceType.TypeVectorPolygon,
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.QUERIES, "Queries"))

    def _locate(
        self,
        parameters: dict,
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        photos: list[Path],
        text: str | None,
        rotate: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Locate `photos` (each fused with `text`) or `text` alone; `options` are further
        `service.LocateRequest` fields."""
        from ..core import service
        from ..result_groups import QueryGroup, query_label

        out = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if out.suffix.lower() != ".gpkg":
            out = out.with_suffix(".gpkg")
        out.parent.mkdir(parents=True, exist_ok=True)
        request = service.LocateRequest(
            self.parameterAsFile(parameters, self.BUNDLE, context),
            self.parameterAsFile(parameters, self.INDEX, context),
            photos=photos,
            text=text,
            top_k=self.parameterAsInt(parameters, self.TOP_K, context),
            rotations=defaults.ROTATIONS if rotate else (0,),
            out=out,
            **options,
        )
        outcome = self.run_service(service.locate, request, feedback)
        for q in outcome.queries:
            feedback.pushInfo(service.summary_line(q))
        group = QueryGroup(query_label(photos, text))
        candidates = f"{out}|layername=candidates"
        footprints = f"{out}|layername=footprints"
        heatmaps = (str(out), outcome.query_ids)
        load_on_completion(
            context,
            candidates,
            f"{group.label} candidates",
            self.CANDIDATES,
            StyleResult("candidates", group, heatmaps),
        )
        load_on_completion(
            context,
            footprints,
            f"{group.label} footprints",
            self.FOOTPRINTS,
            StyleResult("footprints", group),
        )
        return {
            self.OUTPUT: str(out),
            self.CANDIDATES: candidates,
            self.FOOTPRINTS: footprints,
            self.QUERIES: len(outcome.queries),
        }
