"""The multi-scale chip grid over a raster, and reading chips from it.

Chips are squares of given ground sizes (default 100 m and 150 m: GeoLoc's satellite crops are
80 to 180 m on a side) laid with a given overlap in a metric CRS: the raster's own when it is
projected in metres with less than 1 % scale error at the region's centre, else the UTM zone of
the region's centre (so Web Mercator and lon/lat rasters get true-metre chips). Chip centres sit
on multiples of the stride in that CRS, so the same place gets the same chips whatever region is
asked for. A chip belongs to the grid when its centre lies inside the region and inside the
raster's footprint; chips that read as mostly nodata or blank are dropped at read time.

Reading goes through GDAL (GeoTIFF, COG, VRT, GDAL's WMS/XYZ drivers): straight from the raster
when it is in the grid's CRS, else through a warped VRT; each chip is read resampled (average)
to the tower's input size, so a chip costs one RasterIO call. `open_raster` hands out a view of
the file that is north-up and in colour (see raster_view); the reader stretches 16-bit and float
values to 8 bits and shows one grey band as grey RGB.

A raster whose pixels are much coarser than the chips is refused rather than indexed: a chip
needs at least MIN_CHIP_PIXELS pixels across (a tower sees each chip resized to its input,
224 pixels for GeoBridge; from fewer source pixels that is a few blurred blocks).

GDAL raises exceptions only inside the engine's own calls (`gdal_exceptions`), never for the
rest of the process.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr
from pyproj import CRS, Proj, Transformer

from . import chipid, defaults, lattice, raster_view
from .errors import UserError
from .gdal_mode import gdal_exceptions

DEFAULT_CHIP_SIZES = defaults.CHIP_SIZES
DEFAULT_OVERLAP = defaults.OVERLAP
DEFAULT_MAX_CHIPS = defaults.MAX_CHIPS
MAX_SCALE_ERROR = 0.01
NODATA_MAX_SHARE = 0.5
BLANK_MAX_STD = 2.0
MIN_CHIP_PIXELS = 16


# ---------------------------------------------------------------- rasters


@gdal_exceptions()
def open_raster(source: str | Path) -> gdal.Dataset:
    """Open a georeferenced raster (file, URL or GDAL connection string) or say why not.

    What comes back is a north-up view in colour: a paletted raster expanded through its colour
    table, a rotated one warped north-up (both as VRTs over the file)."""
    source = str(source)
    if (
        "://" not in source
        and not source.startswith(("<", "WMS:", "/vsi"))
        and not Path(source).exists()
    ):
        raise UserError(f"{source}: no such raster")
    try:
        ds = gdal.Open(source)
    except RuntimeError as e:
        raise UserError(f"{source}: GDAL cannot read it as a raster ({_first_line(e)})") from None
    if ds is None or ds.RasterCount == 0:
        raise UserError(f"{source}: not a raster")
    gt = ds.GetGeoTransform(can_return_null=True)
    if not ds.GetProjection() or gt is None or gt == (0, 1, 0, 0, 0, 1):
        raise UserError(f"{source}: has no georeference (no CRS or geotransform)")
    # A chip's spread of values is at most half the raster's range: below this, all are blank.
    return raster_view.readable_view(ds, source, min_range=2 * BLANK_MAX_STD)


def raster_identity(source: str | Path, ds: gdal.Dataset) -> dict:
    """What an index records to recognise its raster later (the file's own numbers, not its
    view's)."""
    ds = raster_view.original(ds)
    ident = {
        "source": str(Path(source).resolve()) if Path(str(source)).exists() else str(source),
        "crs_wkt": ds.GetProjection(),
        "geotransform": list(ds.GetGeoTransform()),
        "size": [ds.RasterXSize, ds.RasterYSize],
        "bands": ds.RasterCount,
    }
    if Path(str(source)).is_file():
        st = os.stat(source)
        ident.update(bytes=st.st_size, mtime=int(st.st_mtime))
    return ident


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _crs(wkt_or_code: str) -> CRS:
    return CRS.from_user_input(wkt_or_code)


def utm_crs(lon: float, lat: float) -> CRS:
    zone = math.floor((lon + 180) / 6) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def metric_crs(raster_crs: CRS, lon: float, lat: float) -> CRS:
    """The raster's CRS if it measures true metres near (lon, lat), else the local UTM zone."""
    if raster_crs.is_projected and raster_crs.axis_info[0].unit_name in ("metre", "meter"):
        try:
            f = Proj(raster_crs).get_factors(lon, lat)
            if max(abs(f.meridional_scale - 1), abs(f.parallel_scale - 1)) < MAX_SCALE_ERROR:
                return raster_crs
        except Exception:  # PROJ cannot give factors for some CRSs: be safe, use UTM
            pass
    return utm_crs(lon, lat)


@gdal_exceptions()
def raster_footprint(ds: gdal.Dataset) -> ogr.Geometry:
    """The raster's extent as a densified polygon in its own CRS."""
    gt = ds.GetGeoTransform()
    x0, y0 = gt[0], gt[3]
    x1, y1 = x0 + gt[1] * ds.RasterXSize, y0 + gt[5] * ds.RasterYSize
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)):
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    poly.Segmentize(max(abs(x1 - x0), abs(y1 - y0)) / 64)
    return poly


@gdal_exceptions()
def raster_bounds(ds: gdal.Dataset, crs: CRS) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the raster's extent in `crs` (its own or another)."""
    own = CRS.from_wkt(ds.GetProjection())
    xmin, xmax, ymin, ymax = transform_geometry(raster_footprint(ds), own, crs).GetEnvelope()
    return xmin, ymin, xmax, ymax


@gdal_exceptions()
def transform_geometry(geom: ogr.Geometry, src: CRS, dst: CRS) -> ogr.Geometry:
    """Reproject an OGR geometry with pyproj (always lon/lat or x/y order)."""
    out = geom.Clone()
    if src == dst:
        return out
    t = Transformer.from_crs(src, dst, always_xy=True)

    def visit(g: ogr.Geometry) -> None:
        if g.GetGeometryCount():
            for i in range(g.GetGeometryCount()):
                visit(g.GetGeometryRef(i))
            return
        pts = np.array(g.GetPoints() or [], dtype=float).reshape(-1, 2)
        if len(pts):
            xs, ys = t.transform(pts[:, 0], pts[:, 1])
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                g.SetPoint_2D(i, float(x), float(y))

    visit(out)
    return out


# ---------------------------------------------------------------- regions


@dataclass
class Region:
    """A search region: a polygon in some CRS; None geometry means the whole raster."""

    geometry: ogr.Geometry | None = None
    crs: CRS | None = None
    label: str = "whole raster"

    @classmethod
    @gdal_exceptions()
    def from_bbox(cls, text: str, default_crs: CRS | None = None) -> Region:
        """`x1,y1,x2,y2[,EPSG:n]`; without a CRS, the raster's."""
        parts = [p.strip() for p in text.split(",")]
        crs = default_crs
        if len(parts) == 5:
            try:
                crs = CRS.from_user_input(parts.pop())
            except Exception:
                raise UserError(f"--bbox {text}: unknown CRS") from None
        try:
            x1, y1, x2, y2 = map(float, parts)
        except ValueError:
            raise UserError(f"--bbox {text}: expected x1,y1,x2,y2[,EPSG:n]") from None
        if x1 >= x2 or y1 >= y2:
            raise UserError(f"--bbox {text}: empty box (need x1 < x2 and y1 < y2)")
        geom = ogr.CreateGeometryFromWkt(
            f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))"
        )
        geom.Segmentize(max(x2 - x1, y2 - y1) / 16)
        return cls(geom, crs, f"bbox {text}")

    @classmethod
    @gdal_exceptions()
    def from_file(cls, path: Path | str) -> Region:
        """The union of the polygons in a vector file, in its layer's CRS."""
        path = Path(path)
        try:
            ds = ogr.Open(str(path))
        except RuntimeError as e:
            raise UserError(f"{path}: not a vector file ({_first_line(e)})") from None
        if ds is None or ds.GetLayerCount() == 0:
            raise UserError(f"{path}: not a vector file")
        layer = ds.GetLayer(0)
        srs = layer.GetSpatialRef()
        union = ogr.Geometry(ogr.wkbMultiPolygon)
        for feature in layer:
            g = feature.GetGeometryRef()
            if g is not None and g.GetDimension() == 2:
                union = union.Union(g)
        if union.IsEmpty():
            raise UserError(f"{path}: holds no polygon")
        if srs is None:
            raise UserError(f"{path}: its layer has no CRS")
        return cls(union, CRS.from_wkt(srs.ExportToWkt()), str(path))

    @classmethod
    @gdal_exceptions()
    def from_wkt(cls, wkt: str, crs: str | CRS) -> Region:
        return cls(
            ogr.CreateGeometryFromWkt(wkt), _crs(crs) if isinstance(crs, str) else crs, "wkt"
        )


# ---------------------------------------------------------------- grid


@dataclass
class Grid:
    """Chips as arrays (one row each), so a million chips cost megabytes, not objects."""

    crs: CRS
    chip_sizes: tuple[float, ...]
    overlap: float
    ids: np.ndarray  # int64, unique and stable for (crs, size, position)
    sizes: np.ndarray  # float64 metres
    cx: np.ndarray  # centre x in `crs`
    cy: np.ndarray
    region_wkt: str  # the region used, in `crs`
    lonlat_bounds: tuple[float, float, float, float] = field(default=(0, 0, 0, 0))

    def __len__(self) -> int:
        return len(self.ids)

    def lonlat(self, idx: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        t = Transformer.from_crs(self.crs, 4326, always_xy=True)
        return t.transform(self.cx[idx], self.cy[idx])

    def signature(self) -> dict:
        """What identifies this grid (for resume and for the index manifest)."""
        return {
            "crs": self.crs.to_string(),
            "chip_sizes": list(self.chip_sizes),
            "overlap": self.overlap,
            "count": len(self),
            "ids_checksum": ids_checksum(self.ids),
        }


def ids_checksum(ids: np.ndarray) -> int:
    """An order-free checksum of chip ids: XOR of a hash of each, so the checksums of disjoint
    parts (a grid's blocks) XOR to the whole's."""
    ids = np.asarray(ids, np.int64)
    return int(np.bitwise_xor.reduce(ids * 2654435761 % (1 << 61))) if len(ids) else 0


def _chip_id(size_index: int, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    # Size class and lattice position in Morton order (chipid): ids sort spatially and a
    # chip's footprint follows from its id and the grid.
    return chipid.encode(size_index, kx, ky)


@gdal_exceptions()
def plan_grid(
    ds: gdal.Dataset,
    region: Region | None = None,
    chip_sizes: tuple[float, ...] = DEFAULT_CHIP_SIZES,
    overlap: float = DEFAULT_OVERLAP,
    source: str = "raster",
) -> Grid:
    """Lay the chip grid over `region` (default: the whole raster). Reads no pixels.

    A region too large to enumerate (a country) is planned block by block: core.blockplan."""
    grid_crs, area, region_ll = grid_area(ds, region, chip_sizes, overlap, source)
    label = (region or Region()).label
    xmin, xmax, ymin, ymax = area.GetEnvelope()
    ids, sizes, cxs, cys = [], [], [], []
    for si, size in enumerate(chip_sizes):
        stride = size * (1 - overlap)
        kx0, kx1 = math.ceil(xmin / stride), math.floor(xmax / stride)
        ky0, ky1 = math.ceil(ymin / stride), math.floor(ymax / stride)
        if kx1 < kx0 or ky1 < ky0:
            continue
        nx, ny = kx1 - kx0 + 1, ky1 - ky0 + 1
        if nx * ny > 50_000_000:
            raise UserError(
                f"{source}: {label}: {nx * ny:,} lattice points at {size:g} m; narrow the region"
            )
        rows, cols = np.nonzero(lattice.mask(lattice.scaled(area, stride), kx0, kx1, ky0, ky1))
        kx, ky = kx0 + cols, ky1 - rows
        ids.append(_chip_id(si, kx, ky))
        sizes.append(np.full(len(kx), float(size)))
        cxs.append(kx * stride)
        cys.append(ky * stride)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    e = region_ll.GetEnvelope()
    return Grid(
        crs=grid_crs,
        chip_sizes=tuple(float(s) for s in chip_sizes),
        overlap=float(overlap),
        ids=cat(ids, np.int64),
        sizes=cat(sizes, np.float64),
        cx=cat(cxs, np.float64),
        cy=cat(cys, np.float64),
        region_wkt=area.ExportToWkt(),
        lonlat_bounds=(e[0], e[2], e[1], e[3]),
    )


@gdal_exceptions()
def grid_area(
    ds: gdal.Dataset,
    region: Region | None,
    chip_sizes: tuple[float, ...],
    overlap: float,
    source: str = "raster",
) -> tuple[CRS, ogr.Geometry, ogr.Geometry]:
    """(grid CRS, the part of the region inside the raster in that CRS, the region in lon/lat):
    what every plan of the grid starts from. The CRS is chosen once, from the region's centre."""
    if not chip_sizes or min(chip_sizes) <= 0:
        raise UserError(f"chip sizes must be positive metres, got {chip_sizes}")
    if len(chip_sizes) > 15:
        raise UserError("at most 15 chip sizes")
    if not 0 <= overlap < 0.95:
        raise UserError(f"overlap must be in [0, 0.95), got {overlap}")
    raster_crs = CRS.from_wkt(ds.GetProjection())
    footprint = raster_footprint(ds)
    region = region or Region()
    if region.geometry is None:
        region_geom, region_crs = footprint, raster_crs
    else:
        region_geom, region_crs = region.geometry, region.crs or raster_crs
    if region_geom.IsEmpty() or region_geom.GetArea() <= 0:
        raise UserError(f"{region.label}: the region is empty")
    # Where is the region? Its centre decides the metric CRS.
    region_ll = transform_geometry(region_geom, region_crs, CRS.from_epsg(4326))
    c = region_ll.Centroid()
    grid_crs = metric_crs(raster_crs, c.GetX(), c.GetY())
    _check_resolution(ds, grid_crs, c.GetX(), c.GetY(), min(chip_sizes), source)
    # Clip in the raster's own CRS, then go metric: a raster wider than a UTM zone (a continent,
    # the world) has no finite outline in the region's zone, the part inside the region has.
    area = transform_geometry(region_geom, region_crs, raster_crs).Intersection(footprint)
    if area is None or area.IsEmpty() or area.GetArea() <= 0:
        raise UserError(f"{region.label}: the region does not overlap the raster {source}")
    return grid_crs, transform_geometry(area, raster_crs, grid_crs), region_ll


def _check_resolution(
    ds: gdal.Dataset, grid_crs: CRS, lon: float, lat: float, chip_m: float, source: str
) -> None:
    """Refuse chips that would hold fewer than MIN_CHIP_PIXELS of the raster's pixels across."""
    pixel = raster_view.ground_pixel_m(ds, grid_crs, lon, lat)
    if not math.isfinite(pixel) or chip_m >= MIN_CHIP_PIXELS * pixel:
        return
    need = _round_up(MIN_CHIP_PIXELS * pixel)
    raise UserError(
        f"{source}: its pixels are about {_length(pixel)} on the ground, too coarse for "
        f"{chip_m:g} m chips (a chip needs at least {MIN_CHIP_PIXELS} pixels across); "
        f"use chips of {need:g} m or more, or a finer raster"
    )


def _round_up(v: float) -> float:
    """Up to two significant digits: 117.8 -> 120, 4800.6 -> 4900."""
    step = 10.0 ** (math.floor(math.log10(v)) - 1)
    return math.ceil(v / step - 1e-9) * step


def _length(metres: float) -> str:
    return f"{metres / 1000:.3g} km" if metres >= 1000 else f"{metres:.3g} m"


@gdal_exceptions()
def polygon_geometry(points) -> ogr.Geometry:
    """An OGR polygon from a closed ring of (x, y) points."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in points:
        ring.AddPoint_2D(float(x), float(y))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def chip_polygon(cx: float, cy: float, size: float) -> list[tuple[float, float]]:
    h = size / 2
    return [
        (cx - h, cy - h),
        (cx + h, cy - h),
        (cx + h, cy + h),
        (cx - h, cy + h),
        (cx - h, cy - h),
    ]


# ---------------------------------------------------------------- reading


class ChipReader:
    """Reads chips of a grid from a GDAL raster as uint8 RGB arrays at the tower's size.

    Red, green and blue are taken by the bands' colour names (a BGR file reads right), one grey
    band is shown as grey RGB, 16-bit and float bands are stretched per band between
    percentiles computed once here; alpha, nodata and NaN pixels count as missing.

    `read` returns None for a chip that is mostly nodata or blank.
    """

    @gdal_exceptions()
    def __init__(self, ds: gdal.Dataset, grid_crs: CRS, bounds: tuple[float, float, float, float]):
        self._src_ds = ds  # a warped VRT reads from it: keep it alive as long as the VRT
        # Band roles and the stretch come from the raster itself, once: the warped VRT below
        # keeps the band numbers but not their colour names.
        self.bands, alpha = raster_view.colour_bands(ds)
        self.scale = raster_view.band_stretch(ds, self.bands, alpha)
        self.alpha_full = raster_view.alpha_full(ds, alpha)
        raster_crs = CRS.from_wkt(ds.GetProjection())
        if raster_crs == grid_crs:
            self.ds, self.alpha = ds, alpha
        else:
            # A warped VRT reads (and reprojects) only the windows asked for; its alpha band,
            # last, carries the source's alpha or nodata.
            xmin, ymin, xmax, ymax = bounds
            self.ds = gdal.Warp(
                "",
                ds,
                format="VRT",
                dstSRS=grid_crs.to_wkt(),
                outputBounds=(xmin, ymin, xmax, ymax),
                resampleAlg="bilinear",
                dstAlpha=True,
            )
            self.alpha = self.ds.RasterCount
        self.gt = self.ds.GetGeoTransform()

    @gdal_exceptions()
    def read(self, cx: float, cy: float, size_m: float, out_px: int) -> np.ndarray | None:
        gt = self.gt
        x0 = (cx - size_m / 2 - gt[0]) / gt[1]
        y0 = (cy + size_m / 2 - gt[3]) / gt[5]
        w, h = size_m / gt[1], size_m / -gt[5]
        # Clip the window to the raster; what falls outside counts as nodata.
        W, H = self.ds.RasterXSize, self.ds.RasterYSize
        cx0, cy0 = max(0, round(x0)), max(0, round(y0))
        cx1, cy1 = min(W, round(x0 + w)), min(H, round(y0 + h))
        if cx1 - cx0 < 2 or cy1 - cy0 < 2:
            return None
        # max(0, ...): a window starting a fraction of a pixel inside the raster rounds to -1
        ox0 = max(0, round((cx0 - x0) / w * out_px))
        oy0 = max(0, round((cy0 - y0) / h * out_px))
        ow = max(1, min(out_px - ox0, round((cx1 - cx0) / w * out_px)))
        oh = max(1, min(out_px - oy0, round((cy1 - cy0) / h * out_px)))
        kw = dict(buf_xsize=ow, buf_ysize=oh, resample_alg=gdal.GRIORA_Average)
        arr = self.ds.ReadAsArray(cx0, cy0, cx1 - cx0, cy1 - cy0, band_list=self.bands, **kw)
        valid = np.zeros((out_px, out_px), bool)
        if self.alpha:
            a = self.ds.GetRasterBand(self.alpha).ReadAsArray(cx0, cy0, cx1 - cx0, cy1 - cy0, **kw)
            v = a > self.alpha_full / 2
        else:
            v = (
                self.ds.GetRasterBand(self.bands[0])
                .GetMaskBand()
                .ReadAsArray(cx0, cy0, cx1 - cx0, cy1 - cy0, **kw)
                > 127
            )
        if self.scale is not None:
            arr = arr.astype(np.float64)
            v &= np.isfinite(arr).all(0)  # float rasters may mark gaps with NaN, not nodata
            lo, span = (np.array(p)[:, None, None] for p in zip(*self.scale, strict=True))
            arr = np.clip((np.nan_to_num(arr) - lo) / span * 255, 0, 255)
        valid[oy0 : oy0 + oh, ox0 : ox0 + ow] = v
        if 1 - valid.mean() > NODATA_MAX_SHARE:
            return None
        img = np.zeros((out_px, out_px, 3), np.uint8)
        img[oy0 : oy0 + oh, ox0 : ox0 + ow] = np.moveaxis(arr, 0, -1).astype(np.uint8)
        img[~valid] = 0
        if img[valid].std() < BLANK_MAX_STD:
            return None
        return img
