"""What the chip reader sees of a raster: north-up, colour, 8 bits per channel.

Rasters come in kinds the satellite tower never saw: one band of indices into a colour table,
one grey band, 16-bit or float values, an alpha band or a nodata value, a rotated geotransform.
`readable_view` turns a paletted raster into RGB(A) and a rotated one into a north-up raster,
both as GDAL VRTs (nothing is copied: the VRT reads the file window by window), and refuses a
raster that holds no picture at all; `colour_bands` says which bands are red, green, blue and
alpha; `band_stretch` says how to bring values that are not 8-bit to 0..255.

A VRT reads through the dataset it was made from, and GDAL's Python bindings do not keep that
dataset alive, so each view holds its parents in an attribute.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from osgeo import gdal
from pyproj import CRS, Transformer

from .errors import UserError

# Per-band stretch of 16-bit and float rasters: these percentiles of the valid pixels become
# 0 and 255, so a few hot or dead pixels do not flatten the picture.
STRETCH_PERCENTILES = (2.0, 98.0)
# The percentiles come from the band read once at most this many pixels on its long side (GDAL
# reads an overview when the file has one), with the raster's own mask applied.
STATS_MAX_PX = 1024
_NETWORK_DRIVERS = {"WMS", "WMTS", "WCS", "EEDAI", "PLMosaic", "OGCAPI"}


def _keep(view: gdal.Dataset, *parents: gdal.Dataset) -> gdal.Dataset:
    view._geobridge_parents = parents
    view._geobridge_original = getattr(parents[0], "_geobridge_original", parents[0])
    return view


def original(ds: gdal.Dataset) -> gdal.Dataset:
    """The dataset as opened from the file, before any view was laid over it."""
    return getattr(ds, "_geobridge_original", ds)


def readable_view(ds: gdal.Dataset, source: str, min_range: float) -> gdal.Dataset:
    """`ds` with its colour table applied and its geotransform north-up, or a UserError for a
    raster that holds no picture (see `_check_has_picture`; checked on local files only, as it
    reads a sample of the pixels)."""
    if _is_local(ds, source):
        _check_has_picture(ds, source, min_range)
    view = ds
    band = ds.GetRasterBand(1)
    table = band.GetColorTable()
    if band.GetColorInterpretation() == gdal.GCI_PaletteIndex and table is not None:
        view = _keep(_expand_palette(ds, band, table, source), ds)
    gt = view.GetGeoTransform()
    if gt[2] or gt[4]:
        # The warper writes north-up output; the corners outside the rotated raster get alpha 0.
        warped = gdal.Warp("", view, format="VRT", dstAlpha=True, resampleAlg="bilinear")
        view = _keep(warped, view)
    return view


def _is_local(ds: gdal.Dataset, source: str) -> bool:
    return Path(source).is_file() and ds.GetDriver().ShortName not in _NETWORK_DRIVERS


def _expand_palette(
    ds: gdal.Dataset, band: gdal.Band, table: gdal.ColorTable, source: str
) -> gdal.Dataset:
    kind = table.GetPaletteInterpretation()
    if kind == gdal.GPI_Gray:
        return gdal.Translate("", ds, format="VRT", bandList=[1], rgbExpand="gray")
    if kind != gdal.GPI_RGB:
        name = {gdal.GPI_CMYK: "CMYK", gdal.GPI_HLS: "HLS"}.get(kind, str(kind))
        raise UserError(f"{source}: its colour table is {name}, not RGB; convert it to RGB")
    # With a nodata index or translucent entries the expansion needs its alpha band, else
    # nodata would read as that entry's colour.
    translucent = band.GetNoDataValue() is not None or any(
        table.GetColorEntry(i)[3] < 255 for i in range(table.GetCount())
    )
    return gdal.Translate(
        "", ds, format="VRT", bandList=[1], rgbExpand="rgba" if translucent else "rgb"
    )


def _check_has_picture(ds: gdal.Dataset, source: str, min_range: float) -> None:
    """Refuse a raster no chip of which could show anything: each colour band one value, or
    8-bit values spanning less than `min_range` (a 0/1 mask reads as flat black, and the chip
    reader drops flat chips).

    GDAL's approximate minimum and maximum sample the file cheaply; a refusal is confirmed on
    every pixel first.
    """
    band = ds.GetRasterBand(1)
    paletted = band.GetColorInterpretation() == gdal.GCI_PaletteIndex
    bands = [1] if paletted else list(dict.fromkeys(colour_bands(ds)[0]))
    eight_bit = all(ds.GetRasterBand(i).DataType == gdal.GDT_Byte for i in bands)

    def refused(ranges: list[tuple[float, float]]) -> bool:
        if all(lo == hi for lo, hi in ranges):
            return True
        spread = max(hi for _, hi in ranges) - min(lo for lo, _ in ranges)
        return eight_bit and not paletted and spread < min_range

    try:
        ranges = [ds.GetRasterBand(i).ComputeRasterMinMax(True) for i in bands]
        if not refused(ranges):
            return
        ranges = [ds.GetRasterBand(i).ComputeRasterMinMax(False) for i in bands]
    except RuntimeError:  # GDAL found no valid pixel to measure
        raise UserError(f"{source}: every pixel is nodata; there is no picture to index") from None
    if not refused(ranges):
        return
    values = [lo for lo, _ in ranges]
    nodata = band.GetNoDataValue()
    where = "every pixel" if nodata is None else f"every pixel that is not nodata ({nodata:g})"
    if paletted:
        entry = int(values[0])
        table = band.GetColorTable()
        colour = table.GetColorEntry(entry)[:3] if entry < table.GetCount() else "undefined"
        what = f"has the same colour (palette entry {entry}, RGB {colour})"
    elif any(lo != hi for lo, hi in ranges):
        lo, hi = min(values), max(hi for _, hi in ranges)
        raise UserError(
            f"{source}: its values span only {lo:g} to {hi:g} of 0..255, so every chip reads "
            "as one flat colour; give a mask or class raster a colour table"
        )
    elif len(values) == 1:
        what = f"has the value {values[0]:g}"
    else:
        what = f"has the same colour values ({', '.join(f'{v:g}' for v in values)})"
    raise UserError(f"{source}: {where} {what}; there is no picture to index")


def colour_bands(ds: gdal.Dataset) -> tuple[list[int], int | None]:
    """([red, green, blue] band numbers, alpha band number or None); grey is one band thrice.

    Bands are taken by their colour interpretation where the file says (a BGR file reads as
    RGB), else in file order.
    """
    interp = {i: ds.GetRasterBand(i).GetColorInterpretation() for i in range(1, ds.RasterCount + 1)}
    alpha = next((i for i, c in interp.items() if c == gdal.GCI_AlphaBand), None)
    by_kind = {c: i for i, c in reversed(interp.items())}
    rgb = [by_kind.get(c) for c in (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)]
    if all(rgb):
        return rgb, alpha
    if gdal.GCI_GrayIndex in by_kind:
        return [by_kind[gdal.GCI_GrayIndex]] * 3, alpha
    colour = [i for i in interp if i != alpha]
    return (colour[:3] if len(colour) >= 3 else colour[:1] * 3), alpha


def alpha_full(ds: gdal.Dataset, alpha: int | None) -> float:
    """The value of an opaque pixel in the alpha band: 255, or the top of a 16-bit alpha's range
    (files disagree: GDAL writes 65535, others 255)."""
    if alpha is None or ds.GetRasterBand(alpha).DataType == gdal.GDT_Byte:
        return 255.0
    try:
        hi = ds.GetRasterBand(alpha).ComputeRasterMinMax(True)[1]
    except RuntimeError:  # no valid pixel: nothing will be read as valid anyway
        return 255.0
    return max(255.0, float(hi))


def band_stretch(
    ds: gdal.Dataset, bands: list[int], alpha: int | None
) -> list[tuple[float, float]] | None:
    """Per band (low, span) mapping values to 0..255, or None for an 8-bit raster.

    Computed once per raster from its valid pixels (alpha, nodata and NaN excluded).
    """
    if all(ds.GetRasterBand(i).DataType == gdal.GDT_Byte for i in bands):
        return None
    w, h = ds.RasterXSize, ds.RasterYSize
    f = min(1.0, STATS_MAX_PX / max(w, h))
    bw, bh = max(1, round(w * f)), max(1, round(h * f))
    if alpha:
        mask = ds.GetRasterBand(alpha).ReadAsArray(buf_xsize=bw, buf_ysize=bh) > 0
    else:
        mask = ds.GetRasterBand(bands[0]).GetMaskBand().ReadAsArray(buf_xsize=bw, buf_ysize=bh) > 0
    out = {}
    for i in dict.fromkeys(bands):
        values = ds.GetRasterBand(i).ReadAsArray(buf_xsize=bw, buf_ysize=bh).astype(np.float64)
        values = values[mask & np.isfinite(values)]
        if values.size == 0:
            return [(0.0, 1.0)] * len(bands)
        lo, hi = np.percentile(values, STRETCH_PERCENTILES)
        out[i] = (float(lo), float(max(hi - lo, 1e-9)))
    return [out[i] for i in bands]


def ground_pixel_m(ds: gdal.Dataset, grid_crs: CRS, lon: float, lat: float) -> float:
    """The longer side of one pixel, in metres of `grid_crs`, at (lon, lat); NaN if unknown."""
    gt = ds.GetGeoTransform()
    own = CRS.from_wkt(ds.GetProjection())
    try:
        x, y = Transformer.from_crs(4326, own, always_xy=True).transform(lon, lat)
        xs, ys = Transformer.from_crs(own, grid_crs, always_xy=True).transform(
            [x, x + gt[1], x + gt[2]], [y, y + gt[4], y + gt[5]]
        )
    except Exception:  # PROJ cannot place the point: no verdict rather than a wrong one
        return math.nan
    return max(math.hypot(xs[1] - xs[0], ys[1] - ys[0]), math.hypot(xs[2] - xs[0], ys[2] - ys[0]))
