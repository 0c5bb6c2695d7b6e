"""Reading a user's photo: safely, upright, in RGB, with what its EXIF/XMP says.

A photo is untrusted input: a wrong extension, a damaged file or a decompression bomb must end
in one clear line, never a traceback. EXIF orientation is applied (phones and drones store
rotated pixels plus a tag), any mode becomes RGB and transparency is composited on white. A JPEG
that only lacks its end-of-image marker is decoded as libjpeg decodes it, with a note.

The metadata is read as ExifTool reads it (see `xmp.py` for where XMP hides): position from EXIF
GPS, else from XMP; attitude and height from DJI (`drone-dji`, the older `DJI:` namespace and
the Phantom maker notes), Pix4D `Camera:` (Parrot, senseFly, old Autel), Skydio and Parrot.
A position the file itself marks as no fix (GPS status void / invalid, or exactly 0,0) is not
used, and `notes` says so. Heights are above the take-off point or the ground, never the GPS
altitude above sea level (that one is kept apart in extra["gps_altitude_m"]).
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError
from .xmp import XMP_APP1, XmpProps, jpeg_packets, parse_xmp

log = logging.getLogger(__name__)

MAX_PIXELS = 120_000_000  # ~ a 100 MP photo; beyond this a "photo" is more likely a bomb

# EXIF tag numbers (Pillow 9.4, QGIS's on Debian 12, lacks some of the ExifTags enums)
_MAKE, _XMLPACKET, _EXIF_IFD, _GPS_IFD = 0x010F, 0x02BC, 0x8769, 0x8825
_FOCAL_35MM, _MAKERNOTE = 0xA405, 0x927C
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_ALT_REF, _GPS_ALT, _GPS_STATUS, _GPS_IMG_DIRECTION, _GPS_H_ERROR = 5, 6, 9, 17, 31
EOI = b"\xff\xd9"


@dataclass
class PhotoMeta:
    """What the file says about where and how it was taken (all optional)."""

    lon: float | None = None
    lat: float | None = None
    gps_accuracy_m: float | None = None
    # Height of the camera: above the take-off point (DJI RelativeAltitude) or above the ground
    # (Pix4D AboveGroundAltitude); `altitude_ref` says which. Never the EXIF GPS altitude, which
    # is above sea level and kept in extra["gps_altitude_m"].
    altitude_m: float | None = None
    heading_deg: float | None = None  # clockwise from north (gimbal yaw, else flight yaw)
    pitch_deg: float | None = None  # camera pitch, DJI convention: 0 = horizon, -90 = straight down
    focal_35mm: float | None = None
    make: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    altitude_ref: str | None = None  # "take-off" or "ground"
    gimbal_yaw_deg: float | None = None  # camera yaw as written (degrees, may be negative)
    flight_yaw_deg: float | None = None  # aircraft yaw as written
    # What the analyst should know about this file (a void position, a truncated JPEG ...)
    notes: list[str] = field(default_factory=list)
    # Where each value was read, e.g. {"position": "EXIF GPS", "pitch": "XMP drone-dji"}
    sources: dict[str, str] = field(default_factory=dict)


def read_photo(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo as an upright uint8 RGB array [H, W, 3]."""
    return np.asarray(_open(path, max_pixels)[0])


def read_photo_with_meta(path: Path | str, max_pixels: int = MAX_PIXELS):
    """(pixels, PhotoMeta)."""
    img, meta = _open(path, max_pixels)
    return np.asarray(img), meta


def _open(path: Path | str, max_pixels: int) -> tuple[Image.Image, PhotoMeta]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such photo")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own cap (below) decides; Pillow's hard limit still stops what is far over it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise UserError(
                        f"{path}: {w}x{h} pixels is over the {max_pixels:,} pixel cap "
                        "(decompression bomb?)"
                    )
                meta = _meta(img)
                try:
                    img.load()
                    rgb = _to_rgb(ImageOps.exif_transpose(img))
                except OSError:
                    if img.format != "JPEG":
                        raise
                    rgb = _load_without_eoi(path)
                    meta.notes.append(
                        "the JPEG ends without its end-of-image marker (truncated file?); "
                        "decoded as libjpeg does, so the last rows may be grey"
                    )
                    log.warning("%s: %s", path, meta.notes[-1])
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(
            f"{path}: over the {max_pixels:,} pixel cap (decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: damaged or truncated image ({e})") from None
    return rgb, meta


def _load_without_eoi(path: Path) -> Image.Image:
    """Decode a JPEG whose data stops early as libjpeg does: at the end of the data libjpeg
    supplies an end-of-image marker itself ("Premature end of JPEG file") and decodes what it
    has. Appending the marker does the same for this one read, with no process-wide setting
    (Pillow's LOAD_TRUNCATED_IMAGES is a module global shared by every thread)."""
    with Image.open(io.BytesIO(path.read_bytes() + EOI)) as img:
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float images: stretch to 8 bits rather than clip to white
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.percentile(arr, [0.5, 99.5])
        arr = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")


def xmp_packet(img: Image.Image) -> bytes | str | None:
    """The main XMP packet: Pillow >= 10 puts it in info["xmp"]; older Pillow (QGIS 3.22's
    Python on Debian 12 has 9.4) only keeps the raw APP1 segment in `applist`; some DJI
    firmware writes it only in the EXIF XMLPacket tag."""
    xmp = img.info.get("xmp")
    if isinstance(xmp, bytes | str):
        return xmp
    for marker, data in getattr(img, "applist", None) or []:
        if marker == "APP1" and data.startswith(XMP_APP1):
            return data[len(XMP_APP1) :]
    try:
        packet = img.getexif().get(_XMLPACKET)
    except Exception:  # a broken EXIF block: no packet there
        return None
    return packet if isinstance(packet, bytes | str) else None


def _xmp(img: Image.Image, exif) -> tuple[XmpProps, list[str]]:
    """All XMP properties of the file, merged (the first place that has one wins)."""
    packets: list[tuple[bytes | str | None, str]] = []
    applist = getattr(img, "applist", None)
    if applist:
        main, extended = jpeg_packets(applist)
        packets += [(main, "XMP"), (extended, "extended XMP")]
    else:
        packets += [(img.info.get("xmp"), "XMP"), (img.info.get("XML:com.adobe.xmp"), "XMP")]
    packets.append((exif.get(_XMLPACKET) if exif is not None else None, "EXIF XMLPacket"))
    merged: XmpProps = {}
    where = []
    for packet, name in packets:
        if isinstance(packet, bytes | str) and packet:
            props = parse_xmp(packet)
            if props:
                where.append(name)
            for k, v in props.items():
                merged.setdefault(k, v)
    return merged, where


def _num(value) -> float | None:
    """A finite number from an EXIF value or an XMP string ("+10.50", "5994/100")."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            s = value.strip()
            if "/" in s:
                a, b = s.split("/", 1)
                x = float(a) / float(b)
            else:
                x = float(s)
        else:
            x = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip("\0 ") if value is not None else ""


def _dms(values, ref) -> float | None:
    """EXIF degrees/minutes/seconds (some writers store one or two numbers) and N/S/E/W."""
    try:
        parts = [_num(v) for v in (values if isinstance(values, tuple | list) else [values])]
    except TypeError:
        return None
    if not parts or len(parts) > 3 or any(p is None for p in parts):
        return None
    deg = sum(p / 60**i for i, p in enumerate(parts))
    return -deg if _text(ref).upper()[:1] in ("S", "W") else deg


_XMP_COORD = re.compile(r"^\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*$")


def _xmp_coord(value: str | None) -> float | None:
    """XMP exif:GPSLatitude: "DDD,MM.mmmK" or "DDD,MM,SSK" (XMP spec part 2), or a number."""
    if value is None:
        return None
    m = _XMP_COORD.match(value)
    if not m:
        return _num(value)
    d, mi, s, ref = m.groups()
    deg = float(d) + float(mi) / 60 + float(s or 0) / 3600
    return -deg if ref in "SW" else deg


def _dji_makernote(raw_exif: bytes | None, note) -> dict[int, float]:
    """Float tags of the DJI maker notes (Phantom 3/4: an IFD of inline floats; ExifTool's
    DJI::Main: 6 Pitch, 7 Yaw, 8 Roll, 9 CameraPitch, 10 CameraYaw, 11 CameraRoll)."""
    if not isinstance(note, bytes) or len(note) < 14:
        return {}
    first = "<" if raw_exif is None or raw_exif[6:8] == b"II" else ">"
    for endian in (first, ">" if first == "<" else "<"):
        (n,) = struct.unpack(endian + "H", note[:2])
        if not 1 <= n <= 64 or len(note) < 2 + 12 * n:
            continue
        entries = [
            struct.unpack(endian + "HHI4s", note[2 + 12 * i : 14 + 12 * i]) for i in range(n)
        ]
        # The first entry is Make = "DJI": a maker note that is not this IFD is left alone.
        if entries[0][:2] != (1, 2) or not entries[0][3].startswith(b"DJI"):
            continue
        out = {}
        for tag, typ, count, value in entries:
            if typ == 11 and count == 1:
                (x,) = struct.unpack(endian + "f", value)
                if math.isfinite(x):
                    out[tag] = x
        return out
    return {}


def _pick(meta: PhotoMeta, key: str, candidates) -> float | None:
    """The first candidate (value, source) with a value; records its source."""
    for value, source in candidates:
        if value is not None:
            meta.sources[key] = source
            return value
    return None


def _meta(img: Image.Image) -> PhotoMeta:
    meta = PhotoMeta()
    exif = gps = sub = None
    try:
        exif = img.getexif()
        gps = exif.get_ifd(_GPS_IFD)
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a broken EXIF block must not make the pixels unusable
        meta.notes.append("the EXIF block is damaged; only the XMP metadata was read")
    exif, gps, sub = exif or {}, gps or {}, sub or {}
    try:
        xmp, where = _xmp(img, exif)
    except Exception:  # never let odd metadata stop the pixels
        xmp, where = {}, []
        meta.notes.append("the XMP metadata could not be read")
    if where:
        meta.sources["xmp"] = ", ".join(where)

    def x(fam: str, *names: str) -> tuple[float | None, str]:
        for name in names:
            v = _num(xmp.get((fam, name.lower())))
            if v is not None:
                return v, f"XMP {_FAMILY_LABEL.get(fam, fam)}:{name}"
        return None, ""

    meta.make = _text(exif.get(_MAKE)) or xmp.get(("tiff", "make")) or None
    if meta.make:
        meta.sources["make"] = "EXIF" if _text(exif.get(_MAKE)) else "XMP tiff:Make"
    mn = {}
    if (meta.make or "").upper() == "DJI":
        mn = _dji_makernote(img.info.get("exif"), sub.get(_MAKERNOTE))
    mn_src = "EXIF DJI maker notes"

    _position(meta, gps, xmp)

    gps_alt = _num(gps.get(_GPS_ALT))
    if gps_alt is not None:
        ref = gps.get(_GPS_ALT_REF)
        below = (ref[:1] == b"\x01") if isinstance(ref, bytes) else ref == 1
        meta.extra["gps_altitude_m"] = f"{-gps_alt if below else gps_alt:.2f}"
    meta.gps_accuracy_m = _pick(meta, "gps_accuracy", [
        (_num(gps.get(_GPS_H_ERROR)), "EXIF GPSHPositioningError"),
        x("exifEX", "GPSHPositioningError"),
        x("camera", "GPSXYAccuracy"),
    ])  # fmt: skip

    ground, take_off = x("camera", "AboveGroundAltitude"), x("dji", "RelativeAltitude")
    meta.altitude_m = _pick(meta, "altitude", [ground, take_off])
    if meta.altitude_m is not None:
        meta.altitude_ref = "ground" if ground[0] is not None else "take-off"
    pix4d_pitch, _ = x("camera", "Pitch")
    meta.pitch_deg = _pick(meta, "pitch", [
        x("dji", "GimbalPitchDegree"),
        x("parrot", "CameraPitchDegree"),
        x("skydio", "CameraOrientationNEDPitch"),
        # Pix4D's pitch is 0 looking straight down, 90 at the horizon (Parrot's photo-metadata
        # table gives Camera:Pitch 38.01 beside drone-parrot:CameraPitchDegree -51.99).
        (None if pix4d_pitch is None else pix4d_pitch - 90.0, "XMP Camera:Pitch - 90"),
        (mn.get(9), f"{mn_src} CameraPitch"),
    ])  # fmt: skip
    meta.gimbal_yaw_deg = _pick(meta, "gimbal_yaw", [
        x("dji", "GimbalYawDegree"),
        x("parrot", "CameraYawDegree"),
        x("skydio", "CameraOrientationNEDYaw"),
        x("camera", "Yaw"),
        (mn.get(10), f"{mn_src} CameraYaw"),
    ])  # fmt: skip
    meta.flight_yaw_deg = _pick(meta, "flight_yaw", [
        x("dji", "FlightYawDegree"),
        x("parrot", "DroneYawDegree"),
        x("skydio", "VehicleOrientationNEDYaw"),
        (mn.get(7), f"{mn_src} Yaw"),
    ])  # fmt: skip
    yaw = _pick(meta, "heading", [
        (meta.gimbal_yaw_deg, meta.sources.get("gimbal_yaw", "")),
        (meta.flight_yaw_deg, meta.sources.get("flight_yaw", "")),
        (_num(gps.get(_GPS_IMG_DIRECTION)), "EXIF GPSImgDirection"),
    ])  # fmt: skip
    meta.heading_deg = None if yaw is None else yaw % 360
    focal = _pick(meta, "focal_35mm", [
        (_num(sub.get(_FOCAL_35MM)) or None, "EXIF FocalLengthIn35mmFilm"),
        (x("exif", "FocalLengthIn35mmFilm")[0] or None, "XMP exif:FocalLengthIn35mmFilm"),
    ])  # fmt: skip
    meta.focal_35mm = focal  # 0 means unknown in EXIF
    for key, value in (
        ("gimbal_yaw", meta.gimbal_yaw_deg),
        ("flight_yaw", meta.flight_yaw_deg),
        ("gimbal_pitch", meta.pitch_deg),
        ("relative_altitude", take_off[0]),
        ("above_ground_altitude", ground[0]),
        ("absolute_altitude", x("dji", "AbsoluteAltitude")[0]),
    ):
        if value is not None:
            meta.extra[key] = f"{value:g}"
    return meta


_FAMILY_LABEL = {"dji": "drone-dji", "skydio": "drone-skydio", "parrot": "drone-parrot",
                 "camera": "Camera"}  # fmt: skip


def _position(meta: PhotoMeta, gps, xmp: XmpProps) -> None:
    """Latitude/longitude: EXIF GPS, else XMP exif:, DJI, Skydio; none where the file says the
    fix is void or invalid, or where it is exactly 0,0 (what receivers write without a fix)."""
    candidates = []
    if _GPS_LAT in gps and _GPS_LON in gps:
        lat = _dms(gps[_GPS_LAT], gps.get(_GPS_LAT_REF, "N"))
        lon = _dms(gps[_GPS_LON], gps.get(_GPS_LON_REF, "E"))
        candidates.append((lat, lon, "EXIF GPS"))
    g = xmp.get
    candidates += [
        (_xmp_coord(g(("exif", "gpslatitude"))), _xmp_coord(g(("exif", "gpslongitude"))),
         "XMP exif:GPSLatitude/GPSLongitude"),
        (_num(g(("dji", "gpslatitude"))),
         _num(g(("dji", "gpslongitude")) or g(("dji", "gpslongtitude"))),
         "XMP drone-dji:GpsLatitude/GpsLongitude"),
        (_num(g(("dji", "latitude"))), _num(g(("dji", "longitude"))),
         "XMP drone-dji:Latitude/Longitude"),
        (_num(g(("skydio", "latitude"))), _num(g(("skydio", "longitude"))),
         "XMP drone-skydio:Latitude/Longitude"),
    ]  # fmt: skip
    found = next(((a, b, s) for a, b, s in candidates if a is not None and b is not None), None)
    void = []
    if _text(gps.get(_GPS_STATUS)).upper() == "V":
        void.append("EXIF GPSStatus V, void")
    if (g(("dji", "gpsstatus")) or "").strip().lower() == "invalid":
        void.append("XMP GpsStatus Invalid")
    if void:
        meta.notes.append(f"GPS position not used: the file marks it as no fix ({'; '.join(void)})")
        return
    if found is None:
        return
    lat, lon, source = found
    if lat == 0 and lon == 0:
        meta.notes.append(f"GPS position not used: {source} is exactly 0, 0 (no fix)")
    elif not (-90 <= lat <= 90 and -180 <= lon <= 180):
        meta.notes.append(f"GPS position not used: {source} {lat}, {lon} is out of range")
    else:
        meta.lat, meta.lon = lat, lon
        meta.sources["position"] = source
