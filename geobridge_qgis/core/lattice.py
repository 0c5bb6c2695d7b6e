"""Which lattice points of a chip size lie inside a region: the one rasterisation that both
the whole-region grid (tiling.plan_grid) and the block-wise plan (blockplan) use.

The region is first expressed in lattice units (metres / stride, so lattice point k sits at
k), then GDAL's rasterizer burns a window of the lattice whose origin is a half-integer. In
those units GDAL's pixel coordinates are the region's coordinates shifted by a whole number,
an exact operation, so a lattice point's answer does not depend on which window it is asked
in: a 2 km block gets exactly the chips the whole region's grid has there. (Only a point
lying exactly on a slanted region edge, within rounding, could be answered differently.)
"""

from __future__ import annotations

import struct

import numpy as np
from osgeo import gdal, ogr, osr

from .gdal_mode import gdal_exceptions

_POINT, _LINE, _POLYGON = 1, 2, 3
_COLLECTIONS = (4, 5, 6, 7)


@gdal_exceptions()
def scaled(geom: ogr.Geometry, divisor: float) -> ogr.Geometry:
    """`geom` with every coordinate divided by `divisor` (in C speed: through its WKB).

    Division, not multiplication by the inverse, so that a vertex at k * stride lands on k
    exactly, as the grid's own arithmetic (kx = ceil(xmin / stride)) does."""
    g = geom.Clone()
    g.FlattenTo2D()
    buf = bytearray(g.ExportToWkb(ogr.wkbNDR))
    for pos, n in _coordinate_runs(buf, 0, [])[1]:
        xy = np.frombuffer(buf, "<f8", count=2 * n, offset=pos)
        xy /= divisor
    return ogr.CreateGeometryFromWkb(bytes(buf))


def _coordinate_runs(buf: bytearray, pos: int, runs: list) -> tuple[int, list]:
    """Walk little-endian 2D WKB: (end position, [(offset, points)] of coordinate runs)."""
    if buf[pos] != 1:
        raise ValueError("expected little-endian WKB")
    (kind,) = struct.unpack_from("<I", buf, pos + 1)
    pos += 5
    if kind == _POINT:
        runs.append((pos, 1))
        return pos + 16, runs
    (count,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    if kind == _LINE:
        runs.append((pos, count))
        return pos + 16 * count, runs
    if kind == _POLYGON:
        for _ in range(count):
            (n,) = struct.unpack_from("<I", buf, pos)
            runs.append((pos + 4, n))
            pos += 4 + 16 * n
        return pos, runs
    if kind in _COLLECTIONS:
        for _ in range(count):
            pos, runs = _coordinate_runs(buf, pos, runs)
        return pos, runs
    raise ValueError(f"WKB geometry type {kind} is not a plain 2D geometry")


@gdal_exceptions()
def mask(area_k: ogr.Geometry, kx0: int, kx1: int, ky0: int, ky1: int) -> np.ndarray:
    """bool [ky1 - ky0 + 1, kx1 - kx0 + 1]: lattice points inside `area_k` (in lattice units),
    rows from ky1 down to ky0, columns from kx0 (a pixel centre is inside: GDAL's rule)."""
    nx, ny = kx1 - kx0 + 1, ky1 - ky0 + 1
    ds = gdal.GetDriverByName("MEM").Create("", nx, ny, 1, gdal.GDT_Byte)
    # Unit pixels at half-integer origins: pixel = lattice coordinate - a whole number.
    ds.SetGeoTransform((kx0 - 0.5, 1.0, 0.0, ky1 + 0.5, 0.0, -1.0))
    return burn(ds, area_k, ["OPTIM=VECTOR"])


@gdal_exceptions()
def burn(ds: gdal.Dataset, geom: ogr.Geometry, options: list[str] | None = None) -> np.ndarray:
    """bool [rows, columns] of `ds` (a MEM raster, geotransform set, in `geom`'s units): which
    pixel centres lie inside `geom`."""
    # One nominal CRS on both sides: without one GDAL warns on stderr at every call (and with
    # the same one it transforms nothing).
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    mem = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = mem.CreateLayer("r", srs, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(geom)
    layer.CreateFeature(feature)
    gdal.RasterizeLayer(ds, [1], layer, burn_values=[1], options=options or [])
    return ds.GetRasterBand(1).ReadAsArray().astype(bool)


def coordinates(geom: ogr.Geometry) -> list[np.ndarray]:
    """The vertices of every ring, line and point of `geom`, as [n, 2] arrays."""
    g = geom.Clone()
    g.FlattenTo2D()
    buf = g.ExportToWkb(ogr.wkbNDR)
    return [
        np.frombuffer(buf, "<f8", count=2 * n, offset=pos).reshape(n, 2)
        for pos, n in _coordinate_runs(bytearray(buf), 0, [])[1]
    ]
