"""The metadata of a synthetic drone photo, as DJI writes it: EXIF (GPS, time, camera,
focal length) and DJI-style XMP (gimbal yaw and pitch, altitudes, flight attitude).

EXIF GPS is the drone's position (not the footprint's centre: at tilt t the centre lies
altitude * tan(t) ahead along the heading); `drone-dji:GimbalYawDegree` is the heading in
-180..180 (clockwise from north); `drone-dji:GimbalPitchDegree` is -90 at nadir;
`FocalLengthIn35mmFilm` follows the diagonal field of view (`geobridge_qgis.core.camera`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin

from geobridge_qgis.core.camera import Camera, focal_35mm_from_hfov

from . import __version__
from .render.cameras import PHOTO_SIZE

SENSOR_WIDTH_MM = 13.2  # a 1-inch sensor's width
MAKE = "GeoBridgeSynth"
MODEL = "SynthCam 1in"


def focal_lengths(hfov_deg: float, size: tuple[int, int] = PHOTO_SIZE) -> tuple[float, int]:
    """(focal length in mm on the 1-inch sensor, 35 mm equivalent by the diagonal)."""
    f_mm = SENSOR_WIDTH_MM / 2 / math.tan(math.radians(hfov_deg) / 2)
    return f_mm, round(focal_35mm_from_hfov(hfov_deg, *size))


def _rational(v: float, den: int = 10000) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(round(v * den), den)


def _dms(deg: float) -> tuple:
    deg = abs(deg)
    d = int(deg)
    m = int((deg - d) * 60)
    s = (deg - d - m / 60) * 3600
    return (_rational(d, 1), _rational(m, 1), _rational(s, 10000))


def _signed(v: float) -> str:
    return f"{v:+.2f}"


def _xmp(cam: Camera, meta: dict) -> bytes:
    # The attitude written: the error model's (synthworld.metadata_errors), else the truth.
    yaw = meta.get("yaw", (cam.heading_deg + 180.0) % 360.0 - 180.0)
    fy, fp, fr = meta["flight"]
    flight_yaw = meta.get("flight_yaw", (yaw + fy + 180.0) % 360.0 - 180.0)
    pitch = meta.get("pitch", cam.tilt_deg - 90.0)
    attrs = {
        "drone-dji:AbsoluteAltitude": _signed(meta["gps_alt"]),
        "drone-dji:RelativeAltitude": _signed(meta["rel_alt"]),
        "drone-dji:GimbalRollDegree": "+0.00",
        "drone-dji:GimbalYawDegree": _signed(yaw),
        "drone-dji:GimbalPitchDegree": _signed(pitch),
        "drone-dji:FlightRollDegree": _signed(fr),
        "drone-dji:FlightYawDegree": _signed(flight_yaw),
        "drone-dji:FlightPitchDegree": _signed(fp),
        "drone-dji:GpsLatitude": f"{meta['lat']:.8f}",
        "drone-dji:GpsLongitude": f"{meta['lon']:.8f}",
    }
    body = "\n".join(f'    {k}="{v}"' for k, v in attrs.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"\n'
        '    xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"\n'
        f'    tiff:Make="{MAKE}"\n'
        f"{body}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def save_photo(
    path: Path, img: np.ndarray, cam: Camera, meta: dict | None, xmp: bool = True
) -> None:
    """The photo as a JPEG; with `meta`, EXIF (GPS, time, camera) and, with `xmp`, the DJI XMP
    (attitude, altitudes): without it a photo carries its GPS position only."""
    im = Image.fromarray(img)
    if meta is None:
        im.save(path, "JPEG", quality=90)
        return
    f_mm, f35 = focal_lengths(cam.hfov_deg, (img.shape[1], img.shape[0]))
    stamp = meta["when"].strftime("%Y:%m:%d %H:%M:%S")
    ex = Image.Exif()
    ex[0x010F] = MAKE
    ex[0x0110] = MODEL
    ex[0x0112] = 1  # orientation: top-left
    ex[0x0131] = f"GeoBridge synthworld {__version__}"
    ex[0x0132] = stamp
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = stamp  # DateTimeOriginal
    sub[0x9004] = stamp  # DateTimeDigitized
    sub[0x920A] = _rational(f_mm, 100)  # FocalLength
    sub[0xA405] = int(f35)  # FocalLengthIn35mmFilm
    sub[0xA002] = img.shape[1]
    sub[0xA003] = img.shape[0]
    gps = ex.get_ifd(0x8825)
    gps[0x0000] = b"\x02\x03\x00\x00"
    gps[0x0001] = "N" if meta["lat"] >= 0 else "S"
    gps[0x0002] = _dms(meta["lat"])
    gps[0x0003] = "E" if meta["lon"] >= 0 else "W"
    gps[0x0004] = _dms(meta["lon"])
    gps[0x0005] = b"\x00" if meta["gps_alt"] >= 0 else b"\x01"
    gps[0x0006] = _rational(abs(meta["gps_alt"]), 1000)
    gps[0x0012] = "WGS-84"
    buf = io.BytesIO()
    if xmp:
        im.save(buf, "JPEG", quality=90, exif=ex, xmp=_xmp(cam, meta))
    else:
        im.save(buf, "JPEG", quality=90, exif=ex)
    path.write_bytes(buf.getvalue())
