"""What GDAL should read for a QGIS raster layer.

File-backed layers (provider "gdal") are read from their source. Web layers (provider "wms":
XYZ tiles or OGC WMS) become a GDAL WMS description written to a file next to the index, which
the engine then reads like any raster; such a layer is endless for all practical purposes, so it
is only ever indexed inside a region. Nothing here imports QGIS: the layer is described by plain
strings read from it on the main thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from ..core.errors import UserError

WEB_MERCATOR_HALF = 20037508.342789244
MAX_XYZ_LEVEL = 19  # beyond ~0.3 m/px few tile servers have imagery
WMS_PIXEL_M = 0.3  # GDAL WMS needs a finite grid; finer than any chip's input needs


class SourceError(UserError):
    """The layer cannot be turned into something GDAL reads (message for the user)."""


@dataclass
class LayerSource:
    """A raster layer as GDAL sees it. `web` sources need `write_xml` and a region."""

    kind: str  # "file", "dataset" (a GDAL connection string), "xyz" or "wms"
    source: str  # the GDAL source for "file"; the decoded URI parameters' url for web kinds
    params: dict[str, str]
    crs_authid: str = ""

    @property
    def web(self) -> bool:
        return self.kind in ("xyz", "wms")


def _uri_params(uri: str) -> dict[str, str]:
    """QGIS's WMS/XYZ provider URIs are url-encoded key=value pairs joined by '&'."""
    return {k: v for k, v in parse_qsl(uri, keep_blank_values=True)}


def layer_source(provider: str, source: str, crs_authid: str = "") -> LayerSource:
    """Classify a layer from its provider key and source string (both plain strings, so this
    is safe to call from any thread once read from the layer)."""
    if provider == "gdal":
        plain = source.split("|", 1)[0]
        if Path(plain).exists() or plain.startswith("/vsi") or "://" in plain:
            return LayerSource("file", plain, {}, crs_authid)
        # "GPKG:file.gpkg:table", "NETCDF:file.nc:var", ...: GDAL opens these, but they are
        # not paths, so the engine (which checks that a raster file exists) gets a VRT.
        return LayerSource("dataset", source, {}, crs_authid)
    if provider == "wms":
        params = _uri_params(source)
        if params.get("type") == "xyz":
            if not params.get("url"):
                raise SourceError("the XYZ layer has no url")
            return LayerSource("xyz", params["url"], params, crs_authid)
        if params.get("tileMatrixSet"):
            raise SourceError(
                "WMTS layers are not supported; add the same imagery as an XYZ or WMS layer, "
                "or export the area to a GeoTIFF (Raster > Conversion > Translate)"
            )
        if params.get("url") and params.get("layers") is not None:
            return LayerSource("wms", params["url"], params, params.get("crs", crs_authid))
        raise SourceError(f"cannot read this web layer ({source[:80]})")
    raise SourceError(
        f"layers of the {provider!r} provider cannot be indexed directly; save the layer as a "
        "GeoTIFF first (right-click > Export > Save As)"
    )


def gdal_tms_url(url: str) -> tuple[str, str]:
    """An XYZ url with {x} {y} {z} (or {-y}) -> (GDAL TMS ServerUrl, YOrigin)."""
    y_origin = "top"
    if "{-y}" in url:
        url, y_origin = url.replace("{-y}", "{y}"), "bottom"
    for unsupported in ("{q}", "{s}"):
        if unsupported in url:
            raise SourceError(f"XYZ urls with {unsupported} are not supported: {url}")
    if not all(t in url for t in ("{x}", "{y}", "{z}")):
        raise SourceError(f"the XYZ url needs {{x}}, {{y}} and {{z}}: {url}")
    return url.replace("{x}", "${x}").replace("{y}", "${y}").replace("{z}", "${z}"), y_origin


def xyz_xml(url: str, zmax: int | None = None, bands: int = 3) -> str:
    """A GDAL WMS description of an XYZ tile service over the whole Web Mercator world."""
    server_url, y_origin = gdal_tms_url(url)
    level = min(int(zmax), MAX_XYZ_LEVEL) if zmax is not None else MAX_XYZ_LEVEL
    h = WEB_MERCATOR_HALF
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{escape(server_url)}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-h}</UpperLeftX><UpperLeftY>{h}</UpperLeftY>
    <LowerRightX>{h}</LowerRightX><LowerRightY>{-h}</LowerRightY>
    <TileLevel>{level}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>{y_origin}</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>
  <BandsCount>{bands}</BandsCount>
  <ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>
  <Cache/>
</GDAL_WMS>
"""


def wms_xml(
    params: dict[str, str],
    bounds: tuple[float, float, float, float],
    geographic: bool,
    bands: int = 3,
) -> str:
    """A GDAL WMS description of an OGC WMS layer over `bounds` (xmin, ymin, xmax, ymax, in the
    layer's CRS) at about WMS_PIXEL_M per pixel."""
    xmin, ymin, xmax, ymax = bounds
    step = WMS_PIXEL_M / 111_320 if geographic else WMS_PIXEL_M
    size_x = max(1, math.ceil((xmax - xmin) / step))
    size_y = max(1, math.ceil((ymax - ymin) / step))
    url = params["url"]
    if "?" not in url:
        url += "?"
    crs = params.get("crs", "EPSG:3857")
    fmt = params.get("format", "image/png")
    return f"""<GDAL_WMS>
  <Service name="WMS">
    <Version>1.3.0</Version>
    <ServerUrl>{escape(url)}</ServerUrl>
    <CRS>{escape(crs)}</CRS>
    <ImageFormat>{escape(fmt)}</ImageFormat>
    <Layers>{escape(params.get("layers", ""))}</Layers>
    <Styles>{escape(params.get("styles", ""))}</Styles>
  </Service>
  <DataWindow>
    <UpperLeftX>{xmin!r}</UpperLeftX><UpperLeftY>{ymax!r}</UpperLeftY>
    <LowerRightX>{xmax!r}</LowerRightX><LowerRightY>{ymin!r}</LowerRightY>
    <SizeX>{size_x}</SizeX><SizeY>{size_y}</SizeY>
  </DataWindow>
  <Projection>{escape(crs)}</Projection>
  <BlockSizeX>512</BlockSizeX><BlockSizeY>512</BlockSizeY>
  <BandsCount>{bands}</BandsCount>
  <Cache/>
</GDAL_WMS>
"""


def _write_if_changed(path: Path, text: str) -> Path:
    """Rewrite only when the content differs: an index records its raster's mtime, and a
    resumed build must find the same raster as the interrupted one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def write_web_source(xml: str, index_out: Path) -> Path:
    """The description goes next to the index folder (the index records its path, so it must
    outlive the build) as `<index name>.gdal_wms.xml`."""
    return _write_if_changed(index_out.parent / f"{index_out.name}.gdal_wms.xml", xml)


def clip_to_vrt(
    source: Path | str, bounds: tuple[float, float, float, float] | None, out: Path
) -> Path:
    """A VRT of `source` cut to `bounds` (xmin, ymin, xmax, ymax in the source's CRS; None:
    all of it).

    An XYZ description spans the whole Web Mercator square, and the engine reprojects a
    raster's footprint to the chips' UTM zone, where the poles and the antimeridian have no
    finite coordinates: handing it the region's window instead keeps that footprint finite.
    """
    from osgeo import gdal

    mem = f"/vsimem/geobridge_{id(out)}.vrt"
    options = {}
    if bounds is not None:
        xmin, ymin, xmax, ymax = bounds
        options["projWin"] = [xmin, ymax, xmax, ymin]
    # GDAL's exception mode is process-wide: whichever it is, both outcomes are handled here
    # rather than switched (other plugins in the same QGIS rely on their own choice).
    try:
        dataset = gdal.Translate(mem, str(source), format="VRT", **options)
    except RuntimeError as e:
        raise SourceError(f"{source}: GDAL cannot read it ({e})") from None
    if dataset is None:
        raise SourceError(f"{source}: GDAL cannot read it ({gdal.GetLastErrorMsg()})")
    dataset = None  # closing writes the VRT
    try:
        f = gdal.VSIFOpenL(mem, "rb")
        gdal.VSIFSeekL(f, 0, 2)
        size = gdal.VSIFTellL(f)
        gdal.VSIFSeekL(f, 0, 0)
        text = gdal.VSIFReadL(1, size, f).decode()
        gdal.VSIFCloseL(f)
    finally:
        gdal.Unlink(mem)
    return _write_if_changed(out, text)
