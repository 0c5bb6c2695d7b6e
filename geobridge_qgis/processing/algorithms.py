"""Processing algorithms: build a reference index, locate photos, locate a description.

Each algorithm reads the layers it needs in prepareAlgorithm (QGIS's main thread, where map
layers live) and does the heavy work in processAlgorithm, which QGIS runs in a background
thread: so nothing here touches a widget or the project there. Result layers are handed to
Processing to load on completion; a post-processor (run by QGIS in the main thread) styles them
and moves them into the "GeoBridge results" group.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsProject,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..paths import DEMO_BUNDLE, ICON, IMAGE_FILTER
from .sources import (
    LayerSource,
    SourceError,
    clip_to_vrt,
    layer_source,
    wms_xml,
    write_web_source,
    xyz_xml,
)

# Processing keeps a layer's post-processor only as a raw pointer: the Python object must
# outlive the algorithm (which QGIS may have deleted by the time the layers load). Each one
# leaves this list once it has run; those of runs that load nothing (processing.run) stay,
# a few hundred bytes each.
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


def _crs_for_engine(crs: QgsCoordinateReferenceSystem) -> str:
    """A CRS string pyproj understands: the EPSG/ESRI code when there is one, else WKT2."""
    authid = crs.authid()
    if authid.upper().startswith(("EPSG:", "ESRI:")):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


class _StyleResult(QgsProcessingLayerPostProcessorInterface):
    """Styles a loaded result layer from resources/styles and puts it in the results group.

    The candidates' post-processor also loads the heat maps: a GeoPackage raster table
    ("GPKG:file:table") is not a layer string Processing can load, and a raster layer made in
    the algorithm's thread would have to outlive the context that holds it.
    """

    def __init__(self, kind: str, heatmaps: tuple[str, str, list[int]] | None = None):
        super().__init__()
        self.kind = kind
        self.heatmaps = heatmaps  # (gpkg, label, query ids)

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        from ..layers import add_heatmaps, place_in_group, style_layer

        project = context.project() or QgsProject.instance()
        style_layer(layer, self.kind)
        place_in_group(layer, self.kind, project)
        if self.heatmaps:
            gpkg, label, query_ids = self.heatmaps
            add_heatmaps(gpkg, project, label, query_ids)
        if self in _POST_PROCESSORS:
            _POST_PROCESSORS.remove(self)


def _load_on_completion(
    context: QgsProcessingContext,
    uri: str,
    name: str,
    output: str,
    post: _StyleResult | None = None,
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


def _bundle_parameter() -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(
        "BUNDLE",
        "Model bundle folder",
        behavior=QgsProcessingParameterFile.Folder,
        defaultValue=str(DEMO_BUNDLE),
    )


def _advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


class _GeoBridgeAlgorithm(QgsProcessingAlgorithm):
    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def _user_error(self, e: Exception) -> QgsProcessingException:
        return QgsProcessingException(str(e))

    def processAlgorithm(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        from ..deps import require_for_processing

        require_for_processing()  # no dialog here: says what is missing and where to install
        return self._process(parameters, context, feedback)

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        raise NotImplementedError


# ---------------------------------------------------------------- build index


class BuildIndexAlgorithm(_GeoBridgeAlgorithm):
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
            "Cuts a satellite raster into overlapping square chips of true ground size (100 m "
            "and 150 m by default), embeds each with the bundle's satellite encoder and writes "
            "a searchable index folder for the Locate algorithms.\n\n"
            "<b>Raster</b>: any GDAL raster layer (GeoTIFF, COG, VRT; any CRS, also degrees: "
            "chips are laid in a metric CRS), or an XYZ / WMS layer. Web layers have no useful "
            "end, so they are only indexed inside a <b>Region</b> (polygons) or an "
            "<b>Extent</b> (in any CRS); a GDAL WMS description of the layer is written next to "
            "the index folder.\n\n"
            "The plan (chip count, time at the rate measured on this machine, disk space, "
            "device) is logged before any pixel is read; builds over <b>Maximum chips</b> are "
            "refused. A cancelled build keeps its work in '<i>index</i>.partial' and resumes "
            "when run again with the same parameters; the index folder exists only once "
            "complete.\n\n"
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
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, "Index only inside this extent", optional=True
            )
        )
        self.addParameter(_bundle_parameter())
        self.addParameter(
            _advanced(
                QgsProcessingParameterString(
                    self.CHIP_SIZES,
                    "Chip sizes (metres, comma separated)",
                    # the analyst's default (GeoBridge settings), read each time the
                    # algorithm is made (a dialog, a run)
                    defaultValue=",".join(f"{s:g}" for s in settings.chip_sizes()),
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.OVERLAP,
                    "Overlap of neighbouring chips (0 to 0.9)",
                    QgsProcessingParameterNumber.Double,
                    0.5,
                    minValue=0.0,
                    maxValue=0.9,
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.MAX_CHIPS,
                    "Maximum chips (larger builds are refused before they start)",
                    QgsProcessingParameterNumber.Integer,
                    250_000,
                    minValue=1,
                )
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Index folder"))
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.FOOTPRINTS, "Chip footprints", QgsProcessing.TypeVectorPolygon
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
            parts = [
                f.geometry()
                for f in source.getFeatures()
                if f.hasGeometry() and f.geometry().type() == QgsWkbTypes.PolygonGeometry
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

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        from ..core import service
        from ..core.errors import UserError
        from ..core.index import Cancelled
        from ..core.tiling import Region
        from ..tasks import engine_call, with_settings

        out = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if out.exists() and not (out.is_dir() and not any(out.iterdir())):
            # Checked before the web source description next to it is (re)written.
            raise QgsProcessingException(
                f"{out}: already exists; choose another output folder or delete it first"
            )
        bundle_dir = self.parameterAsFile(parameters, self.BUNDLE, context)
        try:
            chip_sizes = tuple(
                float(v)
                for v in self.parameterAsString(parameters, self.CHIP_SIZES, context).split(",")
                if v.strip()
            )
        except ValueError:
            raise QgsProcessingException(
                "CHIP_SIZES: expected metres separated by commas, e.g. 100,150"
            ) from None
        overlap = self.parameterAsDouble(parameters, self.OVERLAP, context)
        max_chips = self.parameterAsInt(parameters, self.MAX_CHIPS, context)
        geometry = self._region_geometry(parameters, context)
        if self._source.web and geometry is None:
            raise QgsProcessingException(
                f"{self._layer_name} is a {self._source.kind.upper()} web layer, which covers "
                "the whole world: give a REGION or an EXTENT to index"
            )
        region = None
        if geometry is not None:
            geom, crs, label = geometry
            region = Region.from_wkt(geom.asWkt(), _crs_for_engine(crs))
            region.label = label
        raster = self._raster(out, geometry, chip_sizes, context)
        feedback.pushInfo(f"raster: {raster}")
        if region is not None:
            feedback.pushInfo(f"region: {region.label}")

        try:
            request = service.IndexRequest(
                bundle_dir,
                raster,
                out,
                region=region,
                chip_sizes=chip_sizes,
                overlap=overlap,
                max_chips=max_chips,
            )
            engine_call(
                service.build_index,
                with_settings(request),
                lambda done, total, _rate: feedback.setProgress(100.0 * done / max(total, 1)),
                feedback.isCanceled,
                feedback.pushInfo,
            )
        except Cancelled as e:
            raise QgsProcessingException(
                f"{e} (the work done is kept in {out}.partial; run again with the same "
                "output folder to resume)"
            ) from None
        except UserError as e:
            raise self._user_error(e) from None
        count = json.loads((out / "index.json").read_text())["count"]
        feedback.pushInfo(f"wrote {out}: {count:,} chips")
        footprints = f"{out / 'chips.gpkg'}|layername=chips"
        _load_on_completion(context, footprints, f"{out.name} chips", self.FOOTPRINTS)
        return {self.OUTPUT: str(out), self.FOOTPRINTS: footprints, self.CHIPS: count}

    def _raster(
        self,
        out: Path,
        geometry: tuple[QgsGeometry, QgsCoordinateReferenceSystem, str] | None,
        chip_sizes: tuple[float, ...],
        context: QgsProcessingContext,
    ) -> str:
        """The GDAL source to index: the file itself, or a GDAL WMS description file."""
        src = self._source
        if src.kind == "file":
            return src.source
        if src.kind == "dataset":
            return str(clip_to_vrt(src.source, None, out.parent / f"{out.name}.source.vrt"))
        geom, crs, _label = geometry
        margin_m = 2 * max(chip_sizes or (150.0,))
        if src.kind == "xyz":
            zmax = src.params.get("zmax")
            xml = xyz_xml(src.source, int(zmax) if zmax and zmax.isdigit() else None)
            web_crs = QgsCoordinateReferenceSystem("EPSG:3857")
        else:
            web_crs = QgsCoordinateReferenceSystem(src.params.get("crs") or src.crs_authid)
            if not web_crs.isValid():
                web_crs = self._layer_crs
        rect = QgsCoordinateTransform(
            crs, web_crs, context.transformContext()
        ).transformBoundingBox(geom.boundingBox())
        if web_crs.isGeographic():
            margin = margin_m / 111_320
        else:  # Web Mercator stretches ground by 1/cos(latitude); elsewhere a wider margin
            # costs nothing (only chips inside the region are read).
            lat = (
                QgsCoordinateTransform(
                    crs, QgsCoordinateReferenceSystem("EPSG:4326"), context.transformContext()
                )
                .transformBoundingBox(geom.boundingBox())
                .center()
                .y()
            )
            margin = margin_m / max(math.cos(math.radians(lat)), 0.05)
        bounds = (
            rect.xMinimum() - margin,
            rect.yMinimum() - margin,
            rect.xMaximum() + margin,
            rect.yMaximum() + margin,
        )
        if src.kind == "xyz":
            path = write_web_source(xml, out)
            return str(clip_to_vrt(path, bounds, out.parent / f"{out.name}.gdal_wms.vrt"))
        xml = wms_xml({**src.params, "crs": web_crs.authid()}, bounds, web_crs.isGeographic())
        return str(write_web_source(xml, out))


# ---------------------------------------------------------------- locate


class _LocateAlgorithm(_GeoBridgeAlgorithm):
    BUNDLE = "BUNDLE"
    INDEX = "INDEX"
    TEXT = "TEXT"
    TOP_K = "TOP_K"
    OUTPUT = "OUTPUT"
    CANDIDATES = "CANDIDATES"
    FOOTPRINTS = "FOOTPRINTS"
    QUERIES = "QUERIES"

    def _common_tail(self) -> None:
        self.addParameter(_bundle_parameter())
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                "Index folder (made by Build reference index)",
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                "Candidates per query",
                QgsProcessingParameterNumber.Integer,
                10,
                minValue=1,
                maxValue=1000,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, "Results GeoPackage", "GeoPackage (*.gpkg *.GPKG)"
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.CANDIDATES, "Candidates", QgsProcessing.TypeVectorPoint
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.FOOTPRINTS, "Candidate footprints", QgsProcessing.TypeVectorPolygon
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
        text_weight: float = 0.5,
        **options: Any,
    ) -> dict[str, Any]:
        from ..core import defaults, service
        from ..core.errors import UserError
        from ..core.index import Cancelled
        from ..tasks import engine_call, with_settings

        out = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if out.suffix.lower() != ".gpkg":
            out = out.with_suffix(".gpkg")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            request = service.LocateRequest(
                self.parameterAsFile(parameters, self.BUNDLE, context),
                self.parameterAsFile(parameters, self.INDEX, context),
                photos=photos,
                text=text,
                top_k=self.parameterAsInt(parameters, self.TOP_K, context),
                rotations=defaults.ROTATIONS if rotate else (0,),
                text_weight=text_weight,
                out=out,
                **options,
            )
            outcome = engine_call(
                service.locate,
                with_settings(request),
                lambda done, total, _rate: feedback.setProgress(100.0 * done / max(total, 1)),
                feedback.isCanceled,
                feedback.pushInfo,
            )
            for q in outcome.queries:
                feedback.pushInfo(service.summary_line(q))
        except Cancelled as e:
            raise QgsProcessingException(str(e)) from None
        except UserError as e:
            raise self._user_error(e) from None
        label = outcome.queries[0].label if len(outcome.queries) == 1 else out.stem
        label = label.strip('"')[:40]
        candidates = f"{out}|layername=candidates"
        footprints = f"{out}|layername=footprints"
        heatmaps = (str(out), label, outcome.query_ids)
        _load_on_completion(
            context,
            candidates,
            f"{label} candidates",
            self.CANDIDATES,
            _StyleResult("candidates", heatmaps),
        )
        _load_on_completion(
            context, footprints, f"{label} footprints", self.FOOTPRINTS, _StyleResult("footprints")
        )
        return {
            self.OUTPUT: str(out),
            self.CANDIDATES: candidates,
            self.FOOTPRINTS: footprints,
            self.QUERIES: len(outcome.queries),
        }


class LocatePhotosAlgorithm(_LocateAlgorithm):
    PHOTO = "PHOTO"
    MORE_PHOTOS = "MORE_PHOTOS"
    ROTATE = "ROTATE"
    TEXT_WEIGHT = "TEXT_WEIGHT"
    RERANK = "RERANK"
    REFINE = "REFINE"
    USE_GPS = "USE_GPS"
    USE_ALTITUDE = "USE_ALTITUDE"
    USE_HEADING = "USE_HEADING"
    GPS_RADIUS = "GPS_RADIUS"

    def name(self) -> str:
        return "locatephotos"

    def displayName(self) -> str:
        return "Locate photos"

    def shortHelpString(self) -> str:
        return (
            "Finds where drone photos were taken: each photo is embedded with the bundle's "
            "drone encoder and compared with every chip of the index; the best chips, merged "
            "across chip sizes, become ranked candidate places.\n\n"
            "<b>Photo</b>: one image file. <b>More photos</b>: further image paths separated "
            "by ';' (from a script: 'MORE_PHOTOS': 'a.jpg;b.jpg'); each photo is its own query "
            "in the same results file.\n"
            "<b>Description</b> (optional): fused with every photo (weight <b>Text weight</b>) "
            "to steer the search, e.g. 'a church beside a roundabout'.\n"
            "<b>Try four headings</b>: a drone photo's heading is unknown and the satellite "
            "imagery is north-up, so the photo is also tried turned by 90, 180 and 270 "
            "degrees; switch off for photos already north-up.\n"
            "<b>Re-rank and refine</b>: the top candidates are matched to the indexed imagery "
            "(SIFT features, RANSAC homography); a match moves the candidate up and gives the "
            "photo's footprint, centre and heading with their uncertainty (method 'refined'). "
            "<b>Refine</b> off keeps the chip locations.\n"
            "<b>Priors</b> from the photo's EXIF/XMP, each of which can be switched off: GPS "
            "limits the search to a circle (radius: <b>GPS uncertainty</b>, 0 = the EXIF "
            "accuracy tag, else 15 m, plus how far an oblique camera looks ahead); altitude "
            "(with the focal length) picks the chip size; the heading picks the rotation.\n\n"
            "Output: a GeoPackage with layers 'candidates' (points: rank, method, score, "
            "probability, lon, lat, heading, uncertainties, match statistics, ...), "
            "'footprints' (refined footprints, else the chip squares), 'query' (what was asked, "
            "with which model, index and priors) and one heat map per query; candidates, "
            "footprints and heat maps are added to the 'GeoBridge results' group."
        )

    def initAlgorithm(self, config: dict | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.PHOTO,
                "Photo",
                behavior=QgsProcessingParameterFile.File,
                fileFilter=IMAGE_FILTER,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.MORE_PHOTOS, "More photos (paths separated by ';')", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.TEXT, "Description of the place (optional)", multiLine=True, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.ROTATE, "Try four headings (the photo's heading is unknown)", True
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.TEXT_WEIGHT,
                    "Text weight when a description is given",
                    QgsProcessingParameterNumber.Double,
                    0.5,
                    minValue=0.0,
                    maxValue=1.0,
                )
            )
        )
        for name, label in (
            (self.RERANK, "Re-rank the top candidates by matching them to the imagery"),
            (self.REFINE, "Refine: the photo's footprint, centre and heading from the match"),
            (self.USE_GPS, "Use the photo's GPS to limit the search"),
            (self.USE_ALTITUDE, "Use the photo's altitude to pick the chip size"),
            (self.USE_HEADING, "Use the photo's heading instead of trying four"),
        ):
            self.addParameter(QgsProcessingParameterBoolean(name, label, True))
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.GPS_RADIUS,
                    "GPS uncertainty in metres (0: the photo's EXIF, else 15)",
                    QgsProcessingParameterNumber.Double,
                    0.0,
                    minValue=0.0,
                )
            )
        )
        self._common_tail()

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        from ..core.service import parse_photo_list

        photos = []
        first = self.parameterAsFile(parameters, self.PHOTO, context)
        if first:
            photos.append(Path(first))
        photos += parse_photo_list(self.parameterAsString(parameters, self.MORE_PHOTOS, context))
        if not photos:
            raise QgsProcessingException(
                "give a PHOTO (and optionally MORE_PHOTOS); for a description alone use "
                "'Locate by description'"
            )
        return self._locate(
            parameters,
            context,
            feedback,
            photos,
            self.parameterAsString(parameters, self.TEXT, context) or None,
            rotate=self.parameterAsBool(parameters, self.ROTATE, context),
            text_weight=self.parameterAsDouble(parameters, self.TEXT_WEIGHT, context),
            rerank=self.parameterAsBool(parameters, self.RERANK, context),
            refine=self.parameterAsBool(parameters, self.REFINE, context),
            use_gps=self.parameterAsBool(parameters, self.USE_GPS, context),
            use_altitude=self.parameterAsBool(parameters, self.USE_ALTITUDE, context),
            use_heading=self.parameterAsBool(parameters, self.USE_HEADING, context),
            gps_radius_m=self.parameterAsDouble(parameters, self.GPS_RADIUS, context) or None,
        )


class LocateTextAlgorithm(_LocateAlgorithm):
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
            "added to the 'GeoBridge results' group."
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
