"""The raster the engine indexes for a QGIS layer: the layer's file itself, a VRT of a GDAL
dataset string, or, for an XYZ or WMS web layer, a GDAL WMS description cut to the region
(with a margin of two chips, so that chips on the region's edge are whole).

The classification and the description texts are QGIS-free (`sources`); this module adds what
needs QGIS: the region's bounding box in the web service's CRS.
"""

from __future__ import annotations

import math
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsGeometry,
)

from ..core import defaults
from .sources import LayerSource, clip_to_vrt, wms_xml, write_web_source, xyz_xml

METRES_PER_DEGREE = 111_320  # at the equator; a margin, not a measurement
MIN_COS_LATITUDE = 0.05  # Web Mercator's stretch, capped near the poles


def _margin(
    margin_m: float,
    geometry: QgsGeometry,
    crs: QgsCoordinateReferenceSystem,
    web_crs: QgsCoordinateReferenceSystem,
    transforms: QgsCoordinateTransformContext,
) -> float:
    """`margin_m` metres in the web CRS's units around the region."""
    if web_crs.isGeographic():
        return margin_m / METRES_PER_DEGREE
    # Web Mercator stretches ground by 1/cos(latitude); elsewhere a wider margin costs nothing
    # (only chips inside the region are read).
    to_wgs84 = QgsCoordinateTransform(crs, QgsCoordinateReferenceSystem("EPSG:4326"), transforms)
    lat = to_wgs84.transformBoundingBox(geometry.boundingBox()).center().y()
    return margin_m / max(math.cos(math.radians(lat)), MIN_COS_LATITUDE)


def prepare_raster(
    source: LayerSource,
    out: Path,
    region: tuple[QgsGeometry, QgsCoordinateReferenceSystem] | None,
    chip_sizes: tuple[float, ...],
    layer_crs: QgsCoordinateReferenceSystem,
    transforms: QgsCoordinateTransformContext,
) -> str:
    """The GDAL source to index for `source`, written next to the index folder `out` when it
    is a description (the index records its path, so it must outlive the build). A web
    source needs `region` (its geometry and CRS); the caller refuses one without."""
    if source.kind == "file":
        return source.source
    if source.kind == "dataset":
        return str(clip_to_vrt(source.source, None, out.parent / f"{out.name}.source.vrt"))
    if region is None:
        raise ValueError("a web layer is indexed only inside a region")
    geometry, crs = region
    margin_m = 2 * max(chip_sizes or defaults.CHIP_SIZES)
    if source.kind == "xyz":
        zmax = source.params.get("zmax")
        xml = xyz_xml(source.source, int(zmax) if zmax and zmax.isdigit() else None)
        web_crs = QgsCoordinateReferenceSystem("EPSG:3857")
    else:
        web_crs = QgsCoordinateReferenceSystem(source.params.get("crs") or source.crs_authid)
        if not web_crs.isValid():
            web_crs = layer_crs
    rect = QgsCoordinateTransform(crs, web_crs, transforms).transformBoundingBox(
        geometry.boundingBox()
    )
    margin = _margin(margin_m, geometry, crs, web_crs, transforms)
    bounds = (
        rect.xMinimum() - margin,
        rect.yMinimum() - margin,
        rect.xMaximum() + margin,
        rect.yMaximum() + margin,
    )
    if source.kind == "xyz":
        path = write_web_source(xml, out)
        return str(clip_to_vrt(path, bounds, out.parent / f"{out.name}.gdal_wms.vrt"))
    xml = wms_xml({**source.params, "crs": web_crs.authid()}, bounds, web_crs.isGeographic())
    return str(write_web_source(xml, out))
