"""Locate results as one GeoPackage that QGIS and OGR open.

Layers (all in EPSG:4326 so that queries against indexes in different UTM zones share them):
`candidates` (points, one per candidate: the refined centre when geometric refinement accepted
it, with its heading and uncertainties and the match statistics; `score` is what ordered them,
`cosine` the retrieval cosine), `footprints` (the refined
footprint, else the candidate's chip square),
`query` (a table: what was asked, of which model and index, with which parameters, when, on
which device) and, per query, a Float32 raster `heatmap_<query_id>` of chip scores in the
index's grid CRS. Written to a temporary file and renamed: a results file is complete or absent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from osgeo import gdal, ogr, osr
from pyproj import CRS

from . import tiling
from .gdal_mode import gdal_exceptions
from .locate import LocateResult
from .outputs import check_writable_file

WGS84 = CRS.from_epsg(4326)


@dataclass
class QueryRecord:
    query_id: int
    kind: str  # "photo", "text" or "photo+text"
    model_id: str
    index_id: str
    file: str | None = None
    sha256: str | None = None
    text: str | None = None
    device: str = ""
    parameters: dict = field(default_factory=dict)
    seconds: float = 0.0
    priors_used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


_CANDIDATE_FIELDS = [
    ("query_id", ogr.OFTInteger),
    ("rank", ogr.OFTInteger),
    (
        "score",
        ogr.OFTReal,
    ),  # what ordered them: the rank score once re-ranked, else the pooled retrieval score
    ("probability", ogr.OFTReal),
    ("cosine", ogr.OFTReal),  # the retrieval cosine of the candidate's best chip
    ("lon", ogr.OFTReal),
    ("lat", ogr.OFTReal),
    ("size_m", ogr.OFTReal),
    ("rotation_deg", ogr.OFTInteger),
    ("n_chips", ogr.OFTInteger),
    ("chip_ids", ogr.OFTString),
    ("method", ogr.OFTString),  # retrieval / reranked / refined
    ("retrieval_rank", ogr.OFTInteger),
    ("merged_ranks", ogr.OFTString),  # retrieval ranks of refined candidates merged into it
    ("rank_score", ogr.OFTReal),
    ("match_ok", ogr.OFTInteger),
    ("match_note", ogr.OFTString),
    ("inliers", ogr.OFTInteger),
    ("heading_deg", ogr.OFTReal),
    ("heading_sigma_deg", ogr.OFTReal),
    ("centre_sigma_m", ogr.OFTReal),  # one sigma, metres, for every kind of candidate
    ("conflict", ogr.OFTString),  # why an accepted match disagrees with the metadata
    ("evidence", ogr.OFTString),  # what the candidate rests on
]
_FOOTPRINT_FIELDS = [
    ("query_id", ogr.OFTInteger),
    ("rank", ogr.OFTInteger),
    ("score", ogr.OFTReal),
    ("size_m", ogr.OFTReal),
    ("method", ogr.OFTString),
]
_QUERY_FIELDS = [
    ("query_id", ogr.OFTInteger),
    ("kind", ogr.OFTString),
    ("file", ogr.OFTString),
    ("sha256", ogr.OFTString),
    ("text", ogr.OFTString),
    ("model_id", ogr.OFTString),
    ("index_id", ogr.OFTString),
    ("parameters", ogr.OFTString),
    ("time", ogr.OFTString),
    ("device", ogr.OFTString),
    ("seconds", ogr.OFTReal),
    ("priors_used", ogr.OFTString),
    ("notes", ogr.OFTString),
    ("prior_lon", ogr.OFTReal),  # the GPS prior's circle: the view centre the metadata
    ("prior_lat", ogr.OFTReal),  # alone predicts, and its radius
    ("prior_radius_m", ogr.OFTReal),
]


def check_writable(path: Path) -> None:
    """Fail before any work when the results cannot be written where asked."""
    check_writable_file(path)


def write_results(path: Path | str, items: list[tuple[QueryRecord, LocateResult, CRS]]) -> Path:
    """Write all queries and their results to one GeoPackage at `path` (replaced if present)."""
    path = Path(path)
    check_writable(path)
    fd, tmp_name = tempfile.mkstemp(suffix=".gpkg", prefix=f".{path.stem}-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        _write(tmp, items)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _srs(crs: CRS) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _layer(ds, name, geom_type, fields, srs=None):
    layer = ds.CreateLayer(name, srs, geom_type, options=["FID=fid"])
    for fname, kind in fields:
        layer.CreateField(ogr.FieldDefn(fname, kind))
    return layer


@gdal_exceptions()
def _write(path: Path, items) -> None:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    wgs = _srs(WGS84)
    cand = _layer(ds, "candidates", ogr.wkbPoint, _CANDIDATE_FIELDS, wgs)
    foot = _layer(ds, "footprints", ogr.wkbPolygon, _FOOTPRINT_FIELDS, wgs)
    query = _layer(ds, "query", ogr.wkbNone, _QUERY_FIELDS)
    for record, result, crs in items:
        for c in result.candidates:
            f = ogr.Feature(cand.GetLayerDefn())
            values = dict(
                query_id=record.query_id, rank=c.rank, score=c.score, probability=c.probability,
                cosine=c.cosine, merged_ranks=",".join(map(str, c.merged_ranks)) or None,
                lon=c.lon, lat=c.lat, size_m=c.size_m, rotation_deg=c.rotation,
                n_chips=len(c.chip_ids), chip_ids=",".join(map(str, c.chip_ids)),
                method=c.method, retrieval_rank=c.retrieval_rank, rank_score=c.rank_score,
                heading_deg=c.heading_deg, heading_sigma_deg=c.heading_sigma_deg,
                centre_sigma_m=c.centre_sigma_m, conflict=c.conflict, evidence=c.evidence or None,
            )  # fmt: skip
            if c.match is not None:
                values.update(match_ok=int(c.match.ok), match_note=_match_note(c.match),
                              inliers=c.match.inliers)  # fmt: skip
            for k, v in values.items():
                if v is not None and v == v:  # NULL for what does not apply (and NaN)
                    f.SetField(k, v)
            f.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({c.lon} {c.lat})"))
            cand.CreateFeature(f)
            g = ogr.Feature(foot.GetLayerDefn())
            for k in ("query_id", "rank", "score", "size_m", "method"):
                g.SetField(k, values[k])
            ring = tiling.transform_geometry(tiling.polygon_geometry(c.footprint), crs, WGS84)
            g.SetGeometry(ring)
            foot.CreateFeature(g)
        f = ogr.Feature(query.GetLayerDefn())
        circle = result.prior_circle
        for k, _ in _QUERY_FIELDS:
            if k.startswith("prior_"):
                if circle is not None:
                    f.SetField(k, circle[("prior_lon", "prior_lat", "prior_radius_m").index(k)])
                continue
            v = getattr(record, k)
            if k == "parameters":
                v = json.dumps(v, sort_keys=True)
            elif k in ("priors_used", "notes"):
                v = "; ".join(v) if v else None
            if v is not None:
                f.SetField(k, v)
        query.CreateFeature(f)
    ds = None
    for record, result, _ in items:
        if result.heatmap is not None:
            _write_heatmap(path, f"heatmap_{record.query_id}", result.heatmap)


def _write_heatmap(gpkg: Path, table: str, heat) -> None:
    rows, cols = heat.values.shape
    mem = gdal.GetDriverByName("MEM").Create("", cols, rows, 1, gdal.GDT_Float32)
    mem.SetGeoTransform(heat.geotransform)
    mem.SetProjection(heat.crs_wkt)
    band = mem.GetRasterBand(1)
    band.SetNoDataValue(-9999.0)
    values = heat.values.copy()
    values[~(values == values)] = -9999.0  # NaN -> nodata
    band.WriteArray(values)
    gdal.Translate(
        str(gpkg),
        mem,
        format="GPKG",
        creationOptions=[f"RASTER_TABLE={table}", "APPEND_SUBDATASET=YES", "TILE_FORMAT=TIFF"],
    )


@gdal_exceptions()
def write_heatmap_tif(path: Path | str, heat) -> None:
    """The heat map alone, as a GeoTIFF."""
    rows, cols = heat.values.shape
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), cols, rows, 1, gdal.GDT_Float32, options=["COMPRESS=DEFLATE"]
    )
    ds.SetGeoTransform(heat.geotransform)
    ds.SetProjection(heat.crs_wkt)
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(float("nan"))
    band.WriteArray(heat.values)
    ds = None


def _match_note(m) -> str:
    """Why a match failed, or that it was accepted (and, for a dense alignment, which has no
    inliers to count, what it rests on)."""
    if m.reason:
        return m.reason
    return f"accepted: {m.summary()}" if m.method.startswith("dense") else "accepted"
