"""The results store: every locate run of a project, kept in one GeoPackage.

A run is what one Locate produced (core.results: its `candidates`, `footprints`, `query` and
heat maps). The store holds each run as its own tables, `candidates_<run>`, `footprints_<run>`,
`query_<run>` and `heatmap_<run>` (`heatmap_<run>_<query>` when a run has several), lists the
runs in `geobridge_runs`, and keeps their QGIS styles in the GeoPackage's `layer_styles` table,
where QGIS looks for a vector layer's default style. Nothing is overwritten: a new run gets the
next number. `export_runs` copies chosen runs, styles included, to a GeoPackage of their own.

QGIS 3.22 saves and loads `layer_styles` rows for vector layers only (its raster layers have no
saveStyleToDatabase, and the GDAL provider reads no styles): heat map styles are written here as
rows of the same table, and the plugin applies them itself when it loads a run.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from osgeo import gdal, ogr

from .errors import UserError

RUNS = "geobridge_runs"
STYLES = "layer_styles"
KINDS = ("candidates", "footprints", "query")
_RUN_FIELDS = [
    ("run_id", ogr.OFTInteger),
    ("label", ogr.OFTString),
    ("created", ogr.OFTString),  # local time, ISO 8601 to the second
    ("queries", ogr.OFTInteger),
    ("candidates", ogr.OFTInteger),
    ("tables", ogr.OFTString),  # comma-separated
    ("source", ogr.OFTString),  # the results GeoPackage the run came from
]
# QGIS's own layout of the table (QgsOgrProvider creates the same when it saves a style first).
_STYLE_FIELDS = [
    ("f_table_catalog", ogr.OFTString),
    ("f_table_schema", ogr.OFTString),
    ("f_table_name", ogr.OFTString),
    ("f_geometry_column", ogr.OFTString),
    ("styleName", ogr.OFTString),
    ("styleQML", ogr.OFTString),
    ("styleSLD", ogr.OFTString),
    ("useAsDefault", ogr.OFTInteger),
    ("description", ogr.OFTString),
    ("owner", ogr.OFTString),
    ("ui", ogr.OFTString),
    ("update_time", ogr.OFTDateTime),
]


@dataclass
class Run:
    run_id: int
    label: str
    created: str
    queries: int = 0
    candidates: int = 0
    tables: list[str] = field(default_factory=list)
    source: str = ""

    def table(self, kind: str) -> str | None:
        """The run's table of a kind ("candidates", "footprints", "query")."""
        name = f"{kind}_{self.run_id}"
        return name if name in self.tables else None

    @property
    def heatmaps(self) -> list[str]:
        return [t for t in self.tables if t.startswith("heatmap_")]

    @property
    def time(self) -> str:
        """HH:MM:SS of `created`, for layer names."""
        return self.created[11:19]


def raster_tables(gpkg: Path | str) -> list[str]:
    """Raster (gridded coverage) tables of a GeoPackage, from its gpkg_contents."""
    try:
        con = sqlite3.connect(f"file:{Path(gpkg).resolve()}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type = '2d-gridded-coverage'"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    return [r[0] for r in rows]


def runs(store: Path | str) -> list[Run]:
    """The runs in a store (or an exported GeoPackage), oldest first; [] when it has none."""
    if not Path(store).is_file():
        return []
    ds = ogr.Open(str(store))
    layer = ds.GetLayerByName(RUNS) if ds is not None else None
    if layer is None:
        return []
    out = [
        Run(
            f.GetField("run_id"),
            f.GetField("label") or "",
            f.GetField("created") or "",
            f.GetField("queries") or 0,
            f.GetField("candidates") or 0,
            [t for t in (f.GetField("tables") or "").split(",") if t],
            f.GetField("source") or "",
        )
        for f in layer
    ]
    return sorted(out, key=lambda r: r.run_id)


def _open_or_create(path: Path) -> ogr.DataSource:
    if path.exists():
        ds = ogr.Open(str(path), update=1)
        if ds is None or ds.GetDriver().GetName() != "GPKG":
            raise UserError(f"{path}: not a GeoPackage")
        return ds
    path.parent.mkdir(parents=True, exist_ok=True)
    return ogr.GetDriverByName("GPKG").CreateDataSource(str(path))


def _table_names(ds: ogr.DataSource) -> set[str]:
    return {ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())}


def _next_run_id(ds: ogr.DataSource, rasters: list[str]) -> int:
    """One above every run number in use, registered or left behind by an interrupted import."""
    used = [0]
    for name in _table_names(ds) | set(rasters):
        head, _, tail = name.partition("_")
        number = tail.split("_")[0]
        if head in (*KINDS, "heatmap") and number.isdigit():
            used.append(int(number))
    layer = ds.GetLayerByName(RUNS)
    if layer is not None:
        used += [f.GetField("run_id") for f in layer]
    return max(used) + 1


def _register(ds: ogr.DataSource, run: Run) -> None:
    layer = ds.GetLayerByName(RUNS)
    if layer is None:
        layer = ds.CreateLayer(RUNS, None, ogr.wkbNone, options=["FID=fid"])
        for name, kind in _RUN_FIELDS:
            layer.CreateField(ogr.FieldDefn(name, kind))
    f = ogr.Feature(layer.GetLayerDefn())
    for name, _ in _RUN_FIELDS:
        value = getattr(run, name)
        f.SetField(name, ",".join(value) if isinstance(value, list) else value)
    layer.CreateFeature(f)


def _copy_raster(src: str, dst: Path, table: str) -> None:
    gdal.Translate(
        str(dst),
        src,
        format="GPKG",
        creationOptions=[f"RASTER_TABLE={table}", "APPEND_SUBDATASET=YES", "TILE_FORMAT=TIFF",
                         f"RASTER_IDENTIFIER={table}"],
        # The source's own identifier would be copied along and clash with another run's.
        metadataOptions=[f"IDENTIFIER={table}"],
    )  # fmt: skip


def import_run(store: Path | str, results: Path | str, label: str) -> Run:
    """Copy a results GeoPackage (core.results) into the store as the next run."""
    store, results = Path(store), Path(results)
    src = ogr.Open(str(results))
    if src is None or src.GetLayerByName("candidates") is None:
        raise UserError(f"{results}: not a GeoBridge results GeoPackage")
    heat = sorted(
        (t for t in raster_tables(results) if t.startswith("heatmap_")),
        key=lambda t: int(t[8:]) if t[8:].isdigit() else 0,
    )
    ds = _open_or_create(store)
    run_id = _next_run_id(ds, raster_tables(store) if store.exists() else [])
    run = Run(run_id, label, dt.datetime.now().isoformat(timespec="seconds"), source=str(results))
    run.queries = src.GetLayerByName("query").GetFeatureCount()
    run.candidates = src.GetLayerByName("candidates").GetFeatureCount()
    for kind in KINDS:
        ds.CopyLayer(src.GetLayerByName(kind), f"{kind}_{run_id}", ["FID=fid"])
        run.tables.append(f"{kind}_{run_id}")
    ds = src = None  # closed before GDAL's raster driver opens the file
    for table in heat:
        name = f"heatmap_{run_id}" if len(heat) == 1 else f"heatmap_{run_id}_{table[8:]}"
        _copy_raster(f"GPKG:{results}:{table}", store, name)
        run.tables.append(name)
    # Registered last: an import cut short leaves no run that points at missing tables.
    ds = _open_or_create(store)
    _register(ds, run)
    ds = None
    return run


def _styles_layer(ds: ogr.DataSource) -> ogr.Layer:
    layer = ds.GetLayerByName(STYLES)
    if layer is None:
        layer = ds.CreateLayer(STYLES, None, ogr.wkbNone, options=["FID=id"])
        for name, kind in _STYLE_FIELDS:
            layer.CreateField(ogr.FieldDefn(name, kind))
    return layer


def save_style(gpkg: Path | str, table: str, qml: str, name: str = "GeoBridge") -> None:
    """Store `qml` as the default style of `table` (for the heat maps, which QGIS 3.22 cannot
    save to a database itself); an earlier default of the table is replaced."""
    ds = ogr.Open(str(gpkg), update=1)
    layer = _styles_layer(ds)
    layer.SetAttributeFilter(f"f_table_name = '{table}'")
    old = [f.GetFID() for f in layer]
    layer.SetAttributeFilter(None)
    for fid in old:
        layer.DeleteFeature(fid)
    f = ogr.Feature(layer.GetLayerDefn())
    values = {
        **{k: "" for k, kind in _STYLE_FIELDS if kind == ogr.OFTString},
        "f_table_name": table,
        "styleName": name,
        "styleQML": qml,
        "useAsDefault": 1,
        "description": "GeoBridge heat map",
    }
    for k, v in values.items():
        f.SetField(k, v)
    now = dt.datetime.now(dt.UTC)
    f.SetField("update_time", now.year, now.month, now.day, now.hour, now.minute, now.second, 100)
    layer.CreateFeature(f)
    ds = None


def style_of(gpkg: Path | str, table: str) -> str | None:
    """The QML of `table`'s default style in `layer_styles` (else its newest), or None."""
    ds = ogr.Open(str(gpkg))
    layer = ds.GetLayerByName(STYLES) if ds is not None else None
    if layer is None:
        return None
    layer.SetAttributeFilter(f"f_table_name = '{table}'")
    rows = sorted(
        ((f.GetField("useAsDefault") or 0, f.GetFID(), f.GetField("styleQML")) for f in layer),
        reverse=True,
    )
    return rows[0][2] if rows else None


def export_runs(store: Path | str, run_ids: list[int], path: Path | str) -> Path:
    """Copy the chosen runs (tables, run list rows and styles) to a new GeoPackage at `path`
    (replaced if present; written beside it and renamed: complete or absent)."""
    store, path = Path(store), Path(path)
    known = {r.run_id: r for r in runs(store)}
    missing = [r for r in run_ids if r not in known]
    if not run_ids or missing:
        raise UserError(f"{store}: no run {', '.join(map(str, missing))}" if missing
                        else "choose at least one run to export")  # fmt: skip
    parent = path.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write there (no such folder, or not writable)")
    chosen = [known[r] for r in sorted(set(run_ids))]
    fd, tmp_name = tempfile.mkstemp(suffix=".gpkg", prefix=f".{path.stem}-", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        _export(store, chosen, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _export(store: Path, chosen: list[Run], out: Path) -> None:
    src = ogr.Open(str(store))
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out))
    tables = [t for run in chosen for t in run.tables]
    for table in tables:
        if not table.startswith("heatmap_"):
            ds.CopyLayer(src.GetLayerByName(table), table, ["FID=fid"])
    for run in chosen:
        _register(ds, run)
    styles = src.GetLayerByName(STYLES)
    if styles is not None:
        target = _styles_layer(ds)
        styles.SetAttributeFilter("f_table_name IN (" + ",".join(f"'{t}'" for t in tables) + ")")
        defn = target.GetLayerDefn()
        for f in styles:
            g = ogr.Feature(defn)
            g.SetFrom(f)
            target.CreateFeature(g)
    ds = src = None
    for run in chosen:
        for table in run.heatmaps:
            _copy_raster(f"GPKG:{store}:{table}", out, table)
