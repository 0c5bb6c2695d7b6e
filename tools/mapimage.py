"""A map of locate results drawn headlessly by QGIS's map renderer (for `make demo`)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def render_map(
    world_dir: Path, gpkg: Path, png: Path, query_of_photo: dict[int, int], size: int = 1400
) -> Path:
    """Satellite raster, the top-1 candidate of the queries in `query_of_photo` (photo row in
    truth.csv -> query id) coloured by score, the true locations (white crosses), a line
    from each truth to its query's top-1, and each photo's metadata prior (yellow: the
    "metadata" candidate's 3-sigma circle)."""
    from qgis.core import QgsApplication

    app = QgsApplication.instance()
    own_app = app is None
    if own_app:
        app = QgsApplication([], False)
        app.initQgis()
    try:
        # Layers and the job live in _render's frame: gone before QGIS shuts down, which
        # otherwise frees them twice.
        _render(world_dir, gpkg, png, query_of_photo, size)
    finally:
        if own_app:
            app.exitQgis()
    return png


def _render(world_dir: Path, gpkg: Path, png: Path, query_of_photo: dict[int, int], size: int):
    from qgis.core import (
        QgsFeature,
        QgsGeometry,
        QgsGraduatedSymbolRenderer,
        QgsLineSymbol,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsMarkerSymbol,
        QgsPointXY,
        QgsRasterLayer,
        QgsRendererRange,
        QgsSingleSymbolRenderer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    sat = QgsRasterLayer(str(Path(world_dir) / "satellite.tif"), "satellite")
    cand = QgsVectorLayer(f"{gpkg}|layername=candidates", "candidates", "ogr")
    ids = ",".join(str(q) for q in query_of_photo.values()) or "-1"
    cand.setSubsetString(f'"rank" = 1 AND "query_id" IN ({ids})')
    truth = QgsVectorLayer("Point?crs=EPSG:4326", "truth", "memory")
    links = QgsVectorLayer("LineString?crs=EPSG:4326", "links", "memory")
    with open(Path(world_dir) / "drone" / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    top = {}
    for feat in cand.getFeatures():
        top.setdefault(feat["query_id"], feat.geometry().asPoint())
    feats, lines = [], []
    for i, r in enumerate(rows):
        p = QgsPointXY(float(r["lon"]), float(r["lat"]))
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromPointXY(p))
        feats.append(f)
        qid = query_of_photo.get(i)
        if qid in top:
            g = QgsFeature()
            g.setGeometry(QgsGeometry.fromPolylineXY([p, top[qid]]))
            lines.append(g)
    truth.dataProvider().addFeatures(feats)
    links.dataProvider().addFeatures(lines)
    priors = _prior_circles(gpkg, ids)
    truth.setRenderer(QgsSingleSymbolRenderer(QgsMarkerSymbol.createSimple(
        {"name": "cross2", "color": "white", "outline_color": "white", "size": "4",
         "outline_width": "0.6"})))  # fmt: skip
    links.setRenderer(QgsSingleSymbolRenderer(QgsLineSymbol.createSimple(
        {"color": "255,255,255,160", "width": "0.4", "line_style": "dash"})))  # fmt: skip
    ranges = []
    scores = sorted(f["score"] for f in cand.getFeatures()) or [0.0, 1.0]
    qs = [scores[int(q * (len(scores) - 1))] for q in (0, 0.25, 0.5, 0.75, 1.0)]
    colours = ["#2c7bb6", "#abd9e9", "#fdae61", "#d7191c"]
    for k in range(4):
        sym = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colours[k], "outline_color": "black", "size": "3.2"}
        )
        ranges.append(QgsRendererRange(qs[k], qs[k + 1] + (1e-9 if k == 3 else 0), sym,
                                       f"{qs[k]:.2f} - {qs[k + 1]:.2f}"))  # fmt: skip
    cand.setRenderer(QgsGraduatedSymbolRenderer("score", ranges))
    settings = QgsMapSettings()
    settings.setLayers([links, truth, cand, priors, sat])
    settings.setDestinationCrs(sat.crs())
    settings.setExtent(sat.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor("black"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    png.parent.mkdir(parents=True, exist_ok=True)
    job.renderedImage().save(str(png), "PNG")


def _prior_circles(gpkg: Path, ids: str):
    """A memory layer of 3-sigma circles around the queries' "metadata" candidates."""
    import math

    from qgis.core import (
        QgsFeature,
        QgsFillSymbol,
        QgsGeometry,
        QgsPointXY,
        QgsSingleSymbolRenderer,
        QgsVectorLayer,
    )

    src = QgsVectorLayer(f"{gpkg}|layername=candidates", "metadata", "ogr")
    src.setSubsetString(f'"method" = \'metadata\' AND "query_id" IN ({ids})')
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "priors", "memory")
    feats = []
    for f in src.getFeatures():
        r = 3 * float(f["centre_sigma_m"] or 0.0)
        lon, lat = float(f["lon"]), float(f["lat"])
        dlat, dlon = r / 111_320.0, r / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
        ring = [QgsPointXY(lon + dlon * math.cos(t), lat + dlat * math.sin(t))
                for t in (2 * math.pi * k / 48 for k in range(49))]  # fmt: skip
        g = QgsFeature()
        g.setGeometry(QgsGeometry.fromPolygonXY([ring]))
        feats.append(g)
    layer.dataProvider().addFeatures(feats)
    style = {"color": "0,0,0,0", "outline_color": "255,221,0,220", "outline_width": "0.5"}
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(style)))
    return layer
