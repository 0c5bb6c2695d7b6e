"""Reading a user's photo: safely, upright, in RGB, with what its EXIF/XMP says.

A photo is untrusted input: a wrong extension, a truncated file or a decompression bomb must
end in one clear line, never a traceback. EXIF orientation is applied (phones and drones store
rotated pixels plus a tag), any mode becomes RGB and transparency is composited on white.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import UserError

MAX_PIXELS = 120_000_000  # ~ a 100 MP photo; beyond this a "photo" is more likely a bomb


@dataclass
class PhotoMeta:
    """What the file says about where and how it was taken (all optional)."""

    lon: float | None = None
    lat: float | None = None
    gps_accuracy_m: float | None = None
    # Above the take-off point (XMP RelativeAltitude): what the altitude prior needs. EXIF GPS
    # altitude is above sea level; it is kept in extra["gps_altitude_m"], never used as height.
    altitude_m: float | None = None
    heading_deg: float | None = None  # clockwise from north (gimbal yaw, else flight yaw)
    pitch_deg: float | None = None  # DJI convention: -90 = straight down
    focal_35mm: float | None = None
    make: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


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
                img.load()
                upright = ImageOps.exif_transpose(img)
                rgb = _to_rgb(upright)
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


def _rational(value) -> float:
    return float(value)


def _dms(values, ref: str) -> float:
    deg = _rational(values[0]) + _rational(values[1]) / 60 + _rational(values[2]) / 3600
    return -deg if ref in ("S", "W") else deg


_XMP_FIELDS = {
    "GimbalYawDegree": "gimbal_yaw",
    "FlightYawDegree": "flight_yaw",
    "GimbalPitchDegree": "gimbal_pitch",
    "RelativeAltitude": "relative_altitude",
    "AbsoluteAltitude": "absolute_altitude",
}


XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"


def xmp_packet(img: Image.Image) -> bytes | str | None:
    """The XMP packet: Pillow >= 10 puts it in info["xmp"]; older Pillow (QGIS 3.22's Python on
    Debian 12 has 9.4) only keeps the raw APP1 segment in `applist`."""
    xmp = img.info.get("xmp")
    if isinstance(xmp, bytes | str):
        return xmp
    for marker, data in getattr(img, "applist", None) or []:
        if marker == "APP1" and data.startswith(XMP_APP1):
            return data[len(XMP_APP1) :]
    return None


def _meta(img: Image.Image) -> PhotoMeta:
    meta = PhotoMeta()
    try:
        exif = img.getexif()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # a broken EXIF block must not make the pixels unusable
        return meta
    meta.make = str(exif.get(ExifTags.Base.Make, "")).strip("\0 ") or None
    try:
        if 2 in gps and 4 in gps:
            meta.lat = _dms(gps[2], gps.get(1, "N"))
            meta.lon = _dms(gps[4], gps.get(3, "E"))
        if 6 in gps:
            asl = _rational(gps[6]) * (-1 if gps.get(5) == 1 else 1)
            meta.extra["gps_altitude_m"] = f"{asl:.2f}"
        if 31 in gps:  # GPSHPositioningError
            meta.gps_accuracy_m = _rational(gps[31])
        if 17 in gps:  # GPSImgDirection
            meta.heading_deg = _rational(gps[17]) % 360
        if ExifTags.Base.FocalLengthIn35mmFilm in sub:
            meta.focal_35mm = float(sub[ExifTags.Base.FocalLengthIn35mmFilm])
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        pass
    xmp = xmp_packet(img)
    if xmp:
        text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
        for tag, key in _XMP_FIELDS.items():
            m = re.search(rf'{tag}\s*=\s*"([-+0-9.eE]+)"|<[\w-]*:?{tag}>([-+0-9.eE]+)<', text)
            if m:
                meta.extra[key] = m.group(1) or m.group(2)
        yaw = meta.extra.get("gimbal_yaw", meta.extra.get("flight_yaw"))
        if yaw is not None:
            meta.heading_deg = float(yaw) % 360
        if "gimbal_pitch" in meta.extra:
            meta.pitch_deg = float(meta.extra["gimbal_pitch"])
        if "relative_altitude" in meta.extra:
            meta.altitude_m = float(meta.extra["relative_altitude"])
    return meta
