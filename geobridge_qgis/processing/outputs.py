"""Result layers of the Processing algorithms: handed to Processing to load on completion, then
styled, grouped per query and named by a post-processor that QGIS runs in the main thread."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsProject,
)

# Processing keeps a layer's post-processor only as a raw pointer: the Python object must
# outlive the algorithm (which QGIS may have deleted by the time the layers load). Each one
# leaves this list once it has run; those of runs that load nothing (processing.run) stay,
# a few hundred bytes each.
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


class StyleResult(QgsProcessingLayerPostProcessorInterface):
    """Styles a loaded result layer from resources/styles and files it in its query's group.

    The candidates' post-processor also loads the heat maps: a GeoPackage raster table
    ("GPKG:file:table") is not a layer string Processing can load, and a raster layer made in
    the algorithm's thread would have to outlive the context that holds it.
    """

    def __init__(self, kind: str, group: Any, heatmaps: tuple[str, list[int]] | None = None):
        super().__init__()
        self.kind = kind
        self.group = group  # result_groups.QueryGroup, shared by the run's post-processors
        self.heatmaps = heatmaps  # (gpkg, query ids)

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        from ..layers import add_heatmaps, place_in_group, style_layer

        project = context.project() or QgsProject.instance()
        style_layer(layer, self.kind)
        place_in_group(layer, self.kind, project)
        added = [layer]
        if self.heatmaps:
            gpkg, query_ids = self.heatmaps
            added += add_heatmaps(gpkg, project, self.group.reserve(project), query_ids)
        self.group.file(added, project)
        if self in _POST_PROCESSORS:
            _POST_PROCESSORS.remove(self)


def load_on_completion(
    context: QgsProcessingContext,
    uri: str,
    name: str,
    output: str,
    post: StyleResult | None = None,
) -> None:
    """Ask Processing to add a result layer to the project when the algorithm is done."""
    project = context.project()
    if project is None:  # a headless context with no project: nothing to load into
        return
    details = QgsProcessingContext.LayerDetails(
        name, project, output, QgsProcessingUtils.LayerHint.Vector
    )
    if post is not None:
        _POST_PROCESSORS.append(post)
        details.setPostProcessor(post)
    context.addLayerToLoadOnCompletion(uri, details)
