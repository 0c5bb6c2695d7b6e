"""Processing > GeoBridge > Build reference index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from .. import settings
from ..core import defaults
from .base import GeoBridgeAlgorithm, advanced, bundle_parameter
from .outputs import load_on_completion
from .raster_input import prepare_raster
from .sources import LayerSource, SourceError, layer_source

MAX_OVERLAP = 0.9  # beyond this neighbouring chips are nearly the same picture


def crs_for_engine(crs: QgsCoordinateReferenceSystem) -> str:
    """A CRS string pyproj understands: the EPSG/ESRI code when there is one, else WKT2."""
    authid = crs.authid()
    if authid.upper().startswith(("EPSG:", "ESRI:")):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED)


def _metres(sizes: tuple[float, ...]) -> str:
    return " and ".join(f"{s:g} m" for s in sizes)


class BuildIndexAlgorithm(GeoBridgeAlgorithm):
    INPUT = "INPUT"
    REGION = "REGION"
    EXTENT = "EXTENT"
    BUNDLE = "BUNDLE"
    CHIP_SIZES = "CHIP_SIZES"
    OVERLAP = "OVERLAP"
    MAX_CHIPS = "MAX_CHIPS"
    OUTPUT = "OUTPUT"
    FOOTPRINTS = "FOOTPRINTS"
    CHIPS = "CHIPS"

    def name(self) -> str:
        return "buildindex"

    def displayName(self) -> str:
        return "Build reference index"

    def shortHelpString(self) -> str:
        return (
            "Cuts a satellite raster into overlapping square chips of true ground size "
            f"({_metres(settings.chip_sizes())} by default, from the GeoBridge settings), "
            "embeds each with the bundle's satellite encoder and writes a searchable index "
            "folder for the Locate algorithms.\n\n"
            "<b>Raster</b>: any GDAL raster layer (GeoTIFF, COG, VRT; any CRS, also degrees: "
            "chips are laid in a metric CRS), or an XYZ / WMS layer. Web layers have no useful "
            "end, so they are only indexed inside a <b>Region</b> (polygons) or an "
            "<b>Extent</b> (in any CRS); a GDAL WMS description of the layer is written next to "
            "the index folder.\n\n"
            "The plan (chip count, time at the rate measured on this machine, disk space, "
            "device) is logged before any pixel is read; builds over <b>Maximum chips</b> "
            f"({defaults.MAX_CHIPS:,} by default) are refused. A cancelled build keeps its work "
            "in '<i>index</i>.partial' and resumes when run again with the same parameters; "
            "the index folder exists only once complete.\n\n"
            "Outputs: the index folder and its chip footprints (layer 'chips')."
        )

    def initAlgorithm(self, config: dict | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.INPUT, "Satellite raster (file, XYZ or WMS layer)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.REGION,
                "Index only inside these polygons",
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, "Index only inside this extent", optional=True
            )
        )
        self.addParameter(bundle_parameter(self.BUNDLE))
        self.addParameter(
            advanced(
                QgsProcessingParameterString(
                    self.CHIP_SIZES,
                    "Chip sizes (metres, comma separated)",
                    defaultValue=settings.chip_sizes_text(),
                )
            )
        )
        self.addParameter(
            advanced(
                QgsProcessingParameterNumber(
                    self.OVERLAP,
                    f"Overlap of neighbouring chips (0 to {MAX_OVERLAP:g})",
                    QgsProcessingParameterNumber.Type.Double,
                    defaults.OVERLAP,
                    minValue=0.0,
                    maxValue=MAX_OVERLAP,
                )
            )
        )
        self.addParameter(
            advanced(
                QgsProcessingParameterNumber(
                    self.MAX_CHIPS,
                    "Maximum chips (larger builds are refused before they start)",
                    QgsProcessingParameterNumber.Type.Integer,
                    defaults.MAX_CHIPS,
                    minValue=1,
                )
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Index folder"))
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.FOOTPRINTS, "Chip footprints", QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Chips indexed"))

    def prepareAlgorithm(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> bool:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException("INPUT: not a raster layer QGIS can open")
        try:
            self._source: LayerSource = layer_source(
                layer.providerType(), layer.source(), layer.crs().authid()
            )
        except SourceError as e:
            raise QgsProcessingException(f"{layer.name()}: {e}") from None
        self._layer_name = layer.name()
        self._layer_crs = QgsCoordinateReferenceSystem(layer.crs())
        return True

    def _region_geometry(
        self, parameters: dict, context: QgsProcessingContext
    ) -> tuple[QgsGeometry, QgsCoordinateReferenceSystem, str] | None:
        """The REGION polygons' union or the EXTENT rectangle, with its CRS and a label."""
        source = self.parameterAsSource(parameters, self.REGION, context)
        has_extent = parameters.get(self.EXTENT) not in (None, "")
        if source is not None and has_extent:
            raise QgsProcessingException("give a REGION or an EXTENT, not both")
        if source is not None:
            polygon = QgsWkbTypes.GeometryType.PolygonGeometry
            parts = [
                f.geometry()
                for f in source.getFeatures()
                if f.hasGeometry() and f.geometry().type() == polygon
            ]
            union = QgsGeometry.unaryUnion(parts) if parts else QgsGeometry()
            if union.isNull() or union.isEmpty():
                raise QgsProcessingException("REGION: the layer holds no polygon")
            return union, source.sourceCrs(), "the REGION polygons"
        if has_extent:
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            if rect.isNull() or rect.isEmpty():
                raise QgsProcessingException("EXTENT: the extent is empty")
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            if not crs.isValid():
                crs = self._layer_crs
            geom = QgsGeometry.fromRect(rect)
            # Densified so that the rectangle keeps its shape when reprojected to the grid CRS.
            geom = geom.densifyByDistance(max(rect.width(), rect.height()) / 32)
            return geom, crs, f"EXTENT {rect.toString(3)} ({crs.authid() or 'custom CRS'})"
        return None

    def _chip_sizes(self, parameters: dict, context: QgsProcessingContext) -> tuple[float, ...]:
        text = self.parameterAsString(parameters, self.CHIP_SIZES, context)
        try:
            sizes = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            sizes = ()
        if not sizes or any(s <= 0 for s in sizes):
            example = settings.chip_sizes_text(defaults.CHIP_SIZES)
            raise QgsProcessingException(
                f"CHIP_SIZES: expected metres separated by commas, e.g. {example}"
            )
        return sizes

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        import json

        from ..core import service
        from ..core.tiling import Region

        out = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if out.exists() and not (out.is_dir() and not any(out.iterdir())):
            # Checked before the web source description next to it is (re)written.
            raise QgsProcessingException(
                f"{out}: already exists; choose another output folder or delete it first"
            )
        chip_sizes = self._chip_sizes(parameters, context)
        geometry = self._region_geometry(parameters, context)
        if self._source.web and geometry is None:
            raise QgsProcessingException(
                f"{self._layer_name} is a {self._source.kind.upper()} web layer, which covers "
                "the whole world: give a REGION or an EXTENT to index"
            )
        region = None
        if geometry is not None:
            geom, crs, label = geometry
            region = Region.from_wkt(geom.asWkt(), crs_for_engine(crs))
            region.label = label
        try:
            raster = prepare_raster(
                self._source,
                out,
                geometry[:2] if geometry is not None else None,
                chip_sizes,
                self._layer_crs,
                context.transformContext(),
            )
        except SourceError as e:
            raise QgsProcessingException(f"{self._layer_name}: {e}") from None
        feedback.pushInfo(f"raster: {raster}")
        if region is not None:
            feedback.pushInfo(f"region: {region.label}")
        request = service.IndexRequest(
            self.parameterAsFile(parameters, self.BUNDLE, context),
            raster,
            out,
            region=region,
            chip_sizes=chip_sizes,
            overlap=self.parameterAsDouble(parameters, self.OVERLAP, context),
            max_chips=self.parameterAsInt(parameters, self.MAX_CHIPS, context),
            exact_max_chips=settings.exact_max_chips(),
        )
        self.run_service(
            service.build_index,
            request,
            feedback,
            when_cancelled=(
                f" (the work done is kept in {out}.partial; run again with the same output "
                "folder to resume)"
            ),
        )
        count = json.loads((out / "index.json").read_text())["count"]
        feedback.pushInfo(f"wrote {out}: {count:,} chips")
        footprints = f"{out / 'chips.gpkg'}|layername=chips"
        load_on_completion(context, footprints, f"{out.name} chips", self.FOOTPRINTS)
        return {self.OUTPUT: str(out), self.FOOTPRINTS: footprints, self.CHIPS: count}
