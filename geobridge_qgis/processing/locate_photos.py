"""Processing > GeoBridge > Locate photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core import defaults
from ..paths import IMAGE_FILTER
from .base import advanced
from .locate_base import LocateAlgorithm


class LocatePhotosAlgorithm(LocateAlgorithm):
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
            "<b>Description</b> (optional): fused with every photo (weight <b>Text weight</b>, "
            f"{defaults.TEXT_WEIGHT:g} by default) to steer the search, e.g. 'a church beside "
            "a roundabout'.\n"
            "<b>Try four headings</b>: a drone photo's heading is unknown and the satellite "
            "imagery is north-up, so the photo is also tried turned by 90, 180 and 270 "
            "degrees; switch off for photos already north-up.\n"
            f"<b>Re-rank and refine</b>: the top {defaults.RERANK_TOP} candidates are matched "
            "to the indexed imagery (SIFT features, RANSAC homography); a match moves the "
            "candidate up and gives the photo's footprint, centre and heading with their "
            "uncertainty (method 'refined'). <b>Refine</b> off keeps the chip locations.\n"
            "<b>Priors</b> from the photo's EXIF/XMP, each of which can be switched off: GPS "
            "limits the search to a circle (radius: <b>GPS uncertainty</b>, 0 = the EXIF "
            f"accuracy tag, else {defaults.GPS_RADIUS_M:g} m, plus how far an oblique camera "
            "looks ahead); altitude (with the focal length) picks the chip size; the heading "
            "picks the rotation.\n\n"
            "Output: a GeoPackage with layers 'candidates' (points: rank, method, score, "
            "probability, lon, lat, heading, uncertainties, match statistics, ...), "
            "'footprints' (refined footprints, else the chip squares), 'query' (what was asked, "
            "with which model, index and priors) and one heat map per query; candidates, "
            "footprints and heat maps are added to a group of their own (photo and time) in "
            "'GeoBridge results'."
        )

    def initAlgorithm(self, config: dict | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.PHOTO,
                "Photo",
                behavior=QgsProcessingParameterFile.Behavior.File,
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
            advanced(
                QgsProcessingParameterNumber(
                    self.TEXT_WEIGHT,
                    "Text weight when a description is given",
                    QgsProcessingParameterNumber.Type.Double,
                    defaults.TEXT_WEIGHT,
                    minValue=0.0,
                    maxValue=1.0,
                )
            )
        )
        for name, label, default in (
            (self.RERANK, "Re-rank the top candidates by matching them to the imagery",
             defaults.RERANK),
            (self.REFINE, "Refine: the photo's footprint, centre and heading from the match",
             defaults.REFINE),
            (self.USE_GPS, "Use the photo's GPS to limit the search", True),
            (self.USE_ALTITUDE, "Use the photo's altitude to pick the chip size", True),
            (self.USE_HEADING, "Use the photo's heading instead of trying four", True),
        ):  # fmt: skip
            self.addParameter(QgsProcessingParameterBoolean(name, label, default))
        self.addParameter(
            advanced(
                QgsProcessingParameterNumber(
                    self.GPS_RADIUS,
                    "GPS uncertainty in metres (0: the photo's EXIF, else "
                    f"{defaults.GPS_RADIUS_M:g})",
                    QgsProcessingParameterNumber.Type.Double,
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
