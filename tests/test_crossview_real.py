"""A real drone photo located on real satellite imagery, end to end through `locate`.

DenseUAV's nadir photo (2021, 100 m) and satellite tiles of the same spot from 2020 and 2022
(`../shared/realdata/crossview/`, see its PROVENANCE.md; read there, never copied here). Each
tile is set in a GeoTIFF written here (UTM, 0.25 m/px, plain grey around it) and indexed with
the demo bundle; the photo gets DJI-style EXIF/XMP: GPS 15 m off, 100 m above take-off, gimbal
pitch -90, the 35 mm focal length of its ~104 m footprint, and a yaw that is right or 10-30
degrees off (real compasses are), or none. A refined match within 6 m of the tile's centre,
heading right, must be found every time: a wrong compass must not switch refinement off.

15 m is three standard deviations of the GPS error model (`posterior.SIGMAS`: 5 m per axis,
the receiver plus the basemap's registration) and 30 degrees is three of the yaw's (10 deg):
the refined match is the answer. Beyond the error model (GPS 30 m off, or the yaw 45 deg off)
the same match is shown as a conflict (both positions, why) below the metadata's own point,
never silently taken.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image, TiffImagePlugin
from pyproj import Transformer

from geobridge_qgis.core import locate as L
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.camera import focal_35mm_from_hfov
from geobridge_qgis.core.encoders import Encoders
from geobridge_qgis.core.index import Index, build_index
from geobridge_qgis.core.photo import read_photo_with_meta

CROSSVIEW = ROOT.parent / "shared" / "realdata" / "crossview"
DRONE = CROSSVIEW / "denseuav_fig_drone_2021_H100.png"
BUNDLE = ROOT / "resources" / "demo" / "bundle"
RES = 0.25  # metres per pixel of the satellite tiles (and of the 100 m photo)
EPSG = 32632
ORIGIN = (500_000.0 - 200.0, 5_800_000.0 + 200.0)  # top-left of a 400 m square
SIDE_PX = 1600
HEADING = 266.0  # the photo's top points west (found without a yaw; both years agree)
GPS_OFF = (10.6, 10.6)  # metres east, north: 15 m, the GPS error model's 3 sigma
GPS_FAR = (21.2, 21.2)  # 30 m: six sigma, a multipath jump

pytestmark = pytest.mark.skipif(
    not DRONE.exists(),
    reason=f"real crossview pair not found at {CROSSVIEW} (CI keeps ../shared beside the checkout)",
)


def _satellite(year: int, path) -> tuple[float, float]:
    """The year's tile in the middle of a grey GeoTIFF; returns the tile's centre."""
    from osgeo import gdal, osr

    tile = np.asarray(Image.open(CROSSVIEW / f"denseuav_fig_sat_{year}.png").convert("RGB"))
    h, w = tile.shape[:2]
    arr = np.full((SIDE_PX, SIDE_PX, 3), 128, np.uint8)
    r0, c0 = (SIDE_PX - h) // 2, (SIDE_PX - w) // 2
    arr[r0 : r0 + h, c0 : c0 + w] = tile
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), SIDE_PX, SIDE_PX, 3, gdal.GDT_Byte, ["TILED=YES"])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    ds.SetProjection(srs.ExportToWkt())
    ds.SetGeoTransform((ORIGIN[0], RES, 0.0, ORIGIN[1], 0.0, -RES))
    ds.WriteArray(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    ds.FlushCache()
    ds = None
    return ORIGIN[0] + (c0 + w / 2) * RES, ORIGIN[1] - (r0 + h / 2) * RES


def _rational(v: float, den: int = 10000) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(round(v * den), den)


def _dms(deg: float) -> tuple:
    deg = abs(deg)
    d, m = int(deg), int((deg - int(deg)) * 60)
    return (_rational(d, 1), _rational(m, 1), _rational((deg - d - m / 60) * 3600))


def _dji_photo(path, img: np.ndarray, lon: float, lat: float, yaw: float | None) -> None:
    """A JPEG with the EXIF and XMP a DJI drone writes (as synthworld.photo_metadata does)."""
    h, w = img.shape[:2]
    hfov = math.degrees(2 * math.atan(w * RES / 2 / 100.0))  # its footprint at 100 m
    ex = Image.Exif()
    ex[0x010F] = "DJI"
    sub = ex.get_ifd(0x8769)
    sub[0xA405] = round(focal_35mm_from_hfov(hfov, w, h))  # FocalLengthIn35mmFilm
    gps = ex.get_ifd(0x8825)
    gps[0x0000] = b"\x02\x03\x00\x00"
    gps[0x0001], gps[0x0002] = "N", _dms(lat)
    gps[0x0003], gps[0x0004] = "E", _dms(lon)
    gps[0x0005], gps[0x0006] = b"\x00", _rational(130.0, 1000)
    attrs = {
        "drone-dji:RelativeAltitude": "+100.00",
        "drone-dji:AbsoluteAltitude": "+130.00",
        "drone-dji:GimbalPitchDegree": "-90.00",
        "drone-dji:GimbalRollDegree": "+0.00",
    }
    if yaw is not None:
        attrs["drone-dji:GimbalYawDegree"] = f"{(yaw + 180) % 360 - 180:+.2f}"
    body = "\n".join(f'    {k}="{v}"' for k, v in attrs.items())
    xmp = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
           '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
           ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
           '  <rdf:Description rdf:about=""\n'
           '    xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"\n'
           f"{body}/>\n </rdf:RDF>\n</x:xmpmeta>\n"
           '<?xpacket end="w"?>').encode()  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, exif=ex, xmp=xmp)
    path.write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def encoders():
    return Encoders(Bundle.load(BUNDLE))


@pytest.fixture(scope="module", params=[2020, 2022])
def scene(request, encoders, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"crossview{request.param}")
    raster = tmp / "satellite.tif"
    centre = _satellite(request.param, raster)
    build_index(encoders, raster, tmp / "index")
    return Index.open(tmp / "index", encoders.bundle), centre


def _locate(index, encoders, centre, yaw_error, gps_off, tmp_path):
    tx, ty = centre
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(
        tx + gps_off[0], ty + gps_off[1]
    )
    drone = np.asarray(Image.open(DRONE).convert("RGB"))
    photo = tmp_path / "dji.jpg"
    _dji_photo(photo, drone, lon, lat, None if yaw_error is None else HEADING + yaw_error)
    img, meta = read_photo_with_meta(photo)
    assert meta.altitude_m == 100.0 and meta.pitch_deg == -90.0
    assert (meta.heading_deg is None) == (yaw_error is None)
    matcher, why = L.matcher_for(index)
    assert matcher is not None, why
    return L.locate_query(index, encoders, img, meta, None, L.QueryOptions(top_k=5), matcher)


def _right(c, centre) -> bool:
    return (
        c.method == "refined"
        and math.hypot(c.x - centre[0], c.y - centre[1]) < 6.0
        and abs((c.heading_deg - HEADING + 180) % 360 - 180) < 5.0
    )


@pytest.mark.parametrize("yaw_error", [None, 0.0, 10.0, 20.0, -30.0, 30.0])
def test_real_photo_refined_within_6_m(scene, encoders, yaw_error, tmp_path):
    """GPS 15 m off and a compass up to 30 deg wrong: the refined match is the answer."""
    index, centre = scene
    res = _locate(index, encoders, centre, yaw_error, GPS_OFF, tmp_path)
    best = res.candidates[0]
    assert _right(best, centre) and best.conflict is None, [
        (c.method, c.x - centre[0], c.y - centre[1], c.conflict) for c in res.candidates
    ]


@pytest.mark.parametrize(("yaw_error", "gps_off", "why"), [
    (None, GPS_FAR, "outside its 3 sigma"),
    (0.0, GPS_FAR, "outside its 3 sigma"),
    (45.0, GPS_OFF, "heading"),
    (-45.0, GPS_OFF, "heading"),
])  # fmt: skip
def test_real_photo_beyond_the_error_model_is_a_conflict(scene, encoders, yaw_error, gps_off,
                                                         why, tmp_path):  # fmt: skip
    """The same match, the metadata beyond its error model: shown as the conflict it is, with
    the reason, after the metadata's own point."""
    index, centre = scene
    res = _locate(index, encoders, centre, yaw_error, gps_off, tmp_path)
    flagged = [c for c in res.candidates if _right(c, centre)]
    assert flagged and flagged[0].conflict and why in flagged[0].conflict
    assert res.candidates[0].method == "metadata"  # a conflict is never the answer
