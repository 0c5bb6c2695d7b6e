"""The vector scene of a world as a GeoPackage: one layer per feature class (plus `cars`),
with the attributes the generator knows, in the world's CRS. Its timestamps are pinned
(OGR_CURRENT_DATE), so the same world gives the same bytes."""

from __future__ import annotations

from pathlib import Path

import shapely

from geobridge_qgis.core.gdal_mode import gdal_exceptions

from .world import LAYERS, World, feature_geometry

OGR_DATE = "2026-01-01T00:00:00Z"


class GdalConfig:
    """Set GDAL config options for a block and put the old values back."""

    def __init__(self, **options: str):
        self.options = options

    def __enter__(self):
        from osgeo import gdal

        self.old = {k: gdal.GetConfigOption(k) for k in self.options}
        for k, v in self.options.items():
            gdal.SetConfigOption(k, v)

    def __exit__(self, *exc):
        from osgeo import gdal

        for k, v in self.old.items():
            gdal.SetConfigOption(k, v)


# Layer -> fields (name, OGR type), in order; every layer has its fields even when empty.
_SCHEMA = {
    "roads": [("kind", "String"), ("width_m", "Real")],
    "roundabouts": [("radius_m", "Real"), ("width_m", "Real")],
    "rivers": [("width_m", "Real")],
    "lakes": [("area_m2", "Real")],
    "fields": [
        ("crop", "String"),
        ("row_angle_deg", "Real"),
        ("spacing_m", "Real"),
        ("tramline_m", "Real"),
        ("tone", "Real"),
    ],
    "forests": [("kind", "String")],
    "trees": [("kind", "String"), ("crown_radius_m", "Real"), ("height_m", "Real")],
    "hedges": [("width_m", "Real")],
    "buildings": [
        ("use", "String"),
        ("roof", "String"),
        ("height_m", "Real"),
        ("gable", "Integer"),
        ("parts", "Integer"),
    ],
    "surfaces": [("kind", "String")],
    "parkings": [("stall_rows", "Integer"), ("stalls", "Integer"), ("cars", "Integer")],
    "sports": [("kind", "String"), ("surface", "String"), ("courts", "Integer")],
    "cars": [("colour", "String"), ("angle_deg", "Real")],
}
_GEOM_TYPES = {
    "trees": "Point",
    "roads": "LineString",
    "rivers": "LineString",
    "hedges": "LineString",
}


def _scene_attributes(layer: str, f) -> list:
    """The feature's values for `_SCHEMA[layer]`, in order."""
    values = {
        "roads": lambda: [f.kind, f.width_m],
        "roundabouts": lambda: [f.radius_m, f.width_m],
        "rivers": lambda: [f.width_m],
        "hedges": lambda: [f.width_m],
        "lakes": lambda: [f.polygon.area],
        "fields": lambda: [f.crop, f.row_angle_deg, f.spacing_m, f.tramline_m, f.tone],
        "forests": lambda: [f.kind],
        "trees": lambda: [f.kind, f.crown_radius_m, f.height_m],
        "buildings": lambda: [f.use, f.roof, f.height_m, int(f.gable), len(f.parts)],
        "surfaces": lambda: [f.kind],
        "parkings": lambda: [f.rows, len(f.stalls()), len(f.cars)],
        "sports": lambda: [f.kind, f.surface, f.courts],
        "cars": lambda: [f.colour, f.angle_deg],
    }
    return values[layer]()


@gdal_exceptions()
def write_scene(world: World, path: Path) -> None:
    """The vector scene as a GeoPackage: one layer per feature class (plus `cars`), with the
    attributes the generator knows, in the world's CRS."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(world.epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ogr_geom = {"Point": ogr.wkbPoint, "LineString": ogr.wkbLineString, "Polygon": ogr.wkbPolygon}
    with GdalConfig(OGR_CURRENT_DATE=OGR_DATE, GDAL_PAM_ENABLED="NO"):
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        for layer in (*LAYERS, "cars"):
            items = list(world.cars) if layer == "cars" else list(getattr(world, layer))
            gtype = ogr_geom[_GEOM_TYPES.get(layer, "Polygon")]
            lyr = ds.CreateLayer(layer, srs, gtype, ["SPATIAL_INDEX=NO"])
            for name, kind in _SCHEMA[layer]:
                lyr.CreateField(ogr.FieldDefn(name, getattr(ogr, f"OFT{kind}")))
            defn = lyr.GetLayerDefn()
            lyr.StartTransaction()
            for f in items:
                feat = ogr.Feature(defn)
                for (name, _), value in zip(
                    _SCHEMA[layer], _scene_attributes(layer, f), strict=True
                ):
                    feat.SetField(name, round(value, 3) if isinstance(value, float) else value)
                g = f.rect().polygon() if layer == "cars" else feature_geometry(f)
                feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(g)))
                lyr.CreateFeature(feat)
            lyr.CommitTransaction()
        ds = None
