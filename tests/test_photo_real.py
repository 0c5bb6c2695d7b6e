"""The photo reader against real drone files, with ExifTool as the oracle.

The files (DJI, Parrot, Skydio, senseFly, GoPro, EXIF orientation samples) live beside the
checkout in ../shared/realdata/photos and are never copied into the repository. ExifTool reads
each at test time; the mapping below from ExifTool's tags to the reader's fields is written
independently of the reader: where ExifTool reports a field the reader must report the same
value, and where ExifTool has none the reader must have none.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.photo import PhotoMeta, read_photo, read_photo_with_meta

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "realdata" / "photos"
FILES = sorted(p.name for p in PHOTOS.iterdir()) if PHOTOS.is_dir() else []
needs_photos = pytest.mark.skipif(
    not FILES,
    reason=f"real test photos not found at {PHOTOS} (CI keeps ../shared beside the checkout)",
)
needs_exiftool = pytest.mark.skipif(
    shutil.which("exiftool") is None,
    reason="exiftool not installed (Debian libimage-exiftool-perl; tools/setup.sh installs it)",
)

DRONE_XMP = ("XMP-drone-dji", "XMP-DJI")  # drone-dji and the older DJI namespace (Zenmuse XT S)
XMP_POSITIONS = [
    ("XMP-exif:GPSLatitude", "XMP-exif:GPSLongitude"),
    *((f"{g}:GPSLatitude", f"{g}:GPSLongitude") for g in DRONE_XMP),
    *((f"{g}:GPSLatitude", f"{g}:GPSLongtitude") for g in DRONE_XMP),  # (sic), Autel firmware
    *((f"{g}:Latitude", f"{g}:Longitude") for g in DRONE_XMP),
    ("XMP-drone-skydio:Latitude", "XMP-drone-skydio:Longitude"),
]


@pytest.fixture(scope="module")
def exiftool() -> dict[str, dict]:
    out = subprocess.run(
        ["exiftool", "-j", "-n", "-G1", *FILES],
        cwd=PHOTOS,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return {d["SourceFile"]: d for d in json.loads(out)}


def _f(value) -> float | None:
    if value is None or value == "":
        return None
    s = str(value)
    if "/" in s:
        a, b = s.split("/")
        return float(a) / float(b)
    return float(s)


def _first(et: dict, *keys: str) -> float | None:
    for key in keys:
        if key in et:
            return _f(et[key])
    return None


def _some(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def expected(et: dict) -> dict:
    """The fields as ExifTool's tags give them (ExifTool -n -G1 names)."""
    lat = lon = None
    if "GPS:GPSLatitude" in et and "GPS:GPSLongitude" in et:
        lat = _f(et["GPS:GPSLatitude"]) * (-1 if et.get("GPS:GPSLatitudeRef") == "S" else 1)
        lon = _f(et["GPS:GPSLongitude"]) * (-1 if et.get("GPS:GPSLongitudeRef") == "W" else 1)
    else:
        for la, lo in XMP_POSITIONS:
            if la in et and lo in et:
                lat, lon = _f(et[la]), _f(et[lo])
                break
    void = et.get("GPS:GPSStatus") == "V" or any(
        k.endswith(":GpsStatus") and str(v).lower() == "invalid" for k, v in et.items()
    )
    if void or (lat == 0 and lon == 0):
        lat = lon = None
    camera_pitch = _first(et, "XMP-Camera:Pitch")
    focal = _first(et, "ExifIFD:FocalLengthIn35mmFormat") or _first(
        et, "XMP-exif:FocalLengthIn35mmFilm"
    )
    w, h = et["File:ImageWidth"], et["File:ImageHeight"]
    if et.get("IFD0:Orientation") in (5, 6, 7, 8):
        w, h = h, w
    return {
        "lat": lat,
        "lon": lon,
        "altitude": _first(
            et, "XMP-Camera:AboveGroundAltitude", *(f"{g}:RelativeAltitude" for g in DRONE_XMP)
        ),
        "pitch": _some(
            _first(
                et,
                *(f"{g}:GimbalPitchDegree" for g in DRONE_XMP),
                "XMP-drone-parrot:CameraPitchDegree",
                "XMP-drone-skydio:CameraOrientationNEDPitch",
            ),
            # Pix4D convention: 0 = looking straight down (DJI's -90)
            None if camera_pitch is None else camera_pitch - 90,
            _first(et, "DJI:CameraPitch"),
        ),
        "gimbal_yaw": _first(
            et,
            *(f"{g}:GimbalYawDegree" for g in DRONE_XMP),
            "XMP-drone-parrot:CameraYawDegree",
            "XMP-drone-skydio:CameraOrientationNEDYaw",
            "XMP-Camera:Yaw",
            "DJI:CameraYaw",
        ),
        "flight_yaw": _first(
            et,
            *(f"{g}:FlightYawDegree" for g in DRONE_XMP),
            "XMP-drone-parrot:DroneYawDegree",
            "XMP-drone-skydio:VehicleOrientationNEDYaw",
            "DJI:Yaw",
        ),
        "focal_35mm": focal or None,
        "make": str(et.get("IFD0:Make") or et.get("XMP-tiff:Make") or "") or None,
        "size": (w, h),
    }


def fields(meta: PhotoMeta, pixels: np.ndarray) -> dict:
    return {
        "lat": meta.lat,
        "lon": meta.lon,
        "altitude": meta.altitude_m,
        "pitch": meta.pitch_deg,
        "gimbal_yaw": meta.gimbal_yaw_deg,
        "flight_yaw": meta.flight_yaw_deg,
        "focal_35mm": meta.focal_35mm,
        "make": meta.make,
        "size": (pixels.shape[1], pixels.shape[0]),
    }


TOLERANCE = {"lat": 1e-6, "lon": 1e-6, "altitude": 1e-3, "focal_35mm": 1e-6}


def _disagreements(want: dict, got: dict) -> list[str]:
    bad = []
    for key, w in want.items():
        g = got[key]
        if (w is None) != (g is None):
            bad.append(f"{key}: exiftool {w!r}, reader {g!r}")
        elif key in ("gimbal_yaw", "flight_yaw", "pitch") and w is not None:
            if abs((g - w + 180) % 360 - 180) > 1e-3:
                bad.append(f"{key}: exiftool {w}, reader {g}")
        elif key in TOLERANCE and w is not None:
            if not math.isclose(g, w, abs_tol=TOLERANCE[key]):
                bad.append(f"{key}: exiftool {w}, reader {g}")
        elif w != g and key not in TOLERANCE:
            bad.append(f"{key}: exiftool {w!r}, reader {g!r}")
    return bad


@needs_photos
@needs_exiftool
@pytest.mark.parametrize("name", FILES)
def test_reads_as_exiftool_does(name, exiftool):
    pixels, meta = read_photo_with_meta(PHOTOS / name)
    want = expected(exiftool[name])
    assert _disagreements(want, fields(meta, pixels)) == []
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    # A height above sea level is never a height above ground.
    if meta.altitude_m is not None and "gps_altitude_m" in meta.extra:
        assert meta.altitude_ref in ("take-off", "ground")
        assert meta.sources["altitude"].startswith("XMP")


@needs_photos
@needs_exiftool
def test_the_oracle_covers_the_hard_cases(exiftool):
    """The comparison above is only as good as what ExifTool finds: these are the files where
    the position, attitude or height sits somewhere unusual, and each must have it."""
    want = {n: expected(exiftool[n]) for n in FILES}
    assert want["aeroscan_dji-mavic-3.jpg"]["pitch"] == pytest.approx(-45.8)  # EXIF XMLPacket
    assert want["aeroscan_dji_mavic_jpg_mode.jpg"]["lat"] == pytest.approx(52.9157605)  # XMP only
    assert want["aeroscan_dji_mavic_jpg_mode.jpg"]["make"] == "DJI"  # XMP tiff:Make
    assert want["openathena_parrot-1.jpg"]["altitude"] == pytest.approx(1.0)  # Camera:
    assert want["openathena_skydio-catilina.jpg"]["gimbal_yaw"] == pytest.approx(127.444323)
    assert want["thermalparser_DJI_XTS.jpg"]["altitude"] == pytest.approx(37.7)  # DJI: namespace
    assert want["odm_1JI_0064_phantom3.JPG"]["pitch"] == pytest.approx(-89.9)  # maker notes
    assert want["thetacal_DJI_0218_mini3pro.JPG"]["lat"] is None  # void GPS
    assert want["orient_Landscape_6.jpg"]["size"] == (1800, 1200)  # stored 1200x1800


@needs_photos
def test_void_gps_is_no_position_and_says_so():
    _, meta = read_photo_with_meta(PHOTOS / "thetacal_DJI_0218_mini3pro.JPG")
    assert meta.lat is None and meta.lon is None
    assert any("void" in n and "Invalid" in n for n in meta.notes), meta.notes
    # The rest of the file's metadata is still read.
    assert meta.pitch_deg == pytest.approx(-7.0) and meta.flight_yaw_deg == pytest.approx(-74.7)


def _jpeg_with_gps(tmp_path: Path, name: str, gps: dict) -> Path:
    exif = Image.Exif()
    exif[0x8825] = gps
    path = tmp_path / name
    Image.new("RGB", (32, 24), (90, 120, 60)).save(path, exif=exif)
    return path


def test_zero_zero_or_void_status_is_no_position(tmp_path):
    ok = {1: "N", 2: (52.0, 30.0, 0.0), 3: "E", 4: (5.0, 15.0, 0.0), 9: "A"}
    _, meta = read_photo_with_meta(_jpeg_with_gps(tmp_path, "ok.jpg", ok))
    assert (meta.lat, meta.lon) == pytest.approx((52.5, 5.25)) and meta.notes == []
    zero = {**ok, 1: "S", 2: (0.0, 0.0, 0.0), 3: "W", 4: (0.0, 0.0, 0.0)}
    _, meta = read_photo_with_meta(_jpeg_with_gps(tmp_path, "zero.jpg", zero))
    assert meta.lat is None and any("0, 0" in n for n in meta.notes), meta.notes
    _, meta = read_photo_with_meta(_jpeg_with_gps(tmp_path, "void.jpg", {**ok, 9: "V"}))
    assert meta.lat is None and any("void" in n for n in meta.notes), meta.notes


def _decode_like_libjpeg(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


@needs_photos
def test_jpeg_without_end_marker_decodes_as_libjpeg_with_a_note():
    path = PHOTOS / "thermalparser_DJI_XTS.jpg"
    assert path.read_bytes()[-2:] != b"\xff\xd9"
    pixels, meta = read_photo_with_meta(path)
    assert np.array_equal(pixels, _decode_like_libjpeg(path))
    assert any("end-of-image" in n for n in meta.notes), meta.notes
    assert meta.altitude_m == pytest.approx(37.7)  # metadata read as well


def test_cut_jpeg_is_read_with_a_note_and_garbage_still_refused(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    whole = read_photo(_write(tmp_path / "whole.jpg", data))
    no_eoi = _write(tmp_path / "no_eoi.jpg", data[:-2])
    pixels, meta = read_photo_with_meta(no_eoi)
    assert np.array_equal(pixels, whole) and meta.notes
    half = _write(tmp_path / "half.jpg", data[: len(data) // 2])
    pixels, meta = read_photo_with_meta(half)
    assert np.array_equal(pixels, _decode_like_libjpeg(half))
    assert np.array_equal(pixels[:8], whole[:8]) and meta.notes  # the first MCU row is intact
    with pytest.raises(UserError, match=r"garbage\.jpg"):
        read_photo(_write(tmp_path / "garbage.jpg", data[:200] + bytes(5000)))
    with pytest.raises(UserError, match=r"header\.jpg"):
        read_photo(_write(tmp_path / "header.jpg", data[:20]))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@needs_photos
def test_all_eight_orientations_come_out_upright():
    ref = read_photo(PHOTOS / "orient_Landscape_1.jpg").astype(np.int16)
    for k in range(2, 9):
        up = read_photo(PHOTOS / f"orient_Landscape_{k}.jpg").astype(np.int16)
        assert up.shape == ref.shape
        assert np.abs(up - ref).mean() < 4, k  # same scene, only JPEG noise differs


def _segment(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def test_extended_xmp_is_joined_and_only_the_named_part_used(tmp_path):
    guid, other = "0123456789ABCDEF0123456789ABCDEF", "FEDCBA9876543210FEDCBA9876543210"
    main = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        '02/22-rdf-syntax-ns#"><rdf:Description xmlns:xmpNote="http://ns.adobe.com/xmp/note/"'
        f' xmpNote:HasExtendedXMP="{guid}"/></rdf:RDF></x:xmpmeta>'
    ).encode()

    def extended(pitch: str) -> bytes:
        return (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
            '02/22-rdf-syntax-ns#"><rdf:Description xmlns:drone-dji="http://www.dji.com/drone-'
            f'dji/1.0/" drone-dji:GimbalPitchDegree="{pitch}" drone-dji:RelativeAltitude="+61.'
            '5" drone-dji:GpsLatitude="47.1" drone-dji:GpsLongitude="8.2"/></rdf:RDF></x:xmpmeta>'
        ).encode()

    def chunks(g: str, packet: bytes) -> bytes:
        cut = len(packet) // 2
        head = (
            b"http://ns.adobe.com/xmp/extension/\x00" + g.encode() + len(packet).to_bytes(4, "big")
        )
        return b"".join(
            _segment(head + off.to_bytes(4, "big") + part)
            for off, part in [(cut, packet[cut:]), (0, packet[:cut])]  # out of order on purpose
        )

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    segments = (
        chunks(other, extended("-10.0"))
        + _segment(b"http://ns.adobe.com/xap/1.0/\x00" + main)
        + chunks(guid, extended("-33.3"))
    )
    _, meta = read_photo_with_meta(_write(tmp_path / "ext.jpg", jpeg[:2] + segments + jpeg[2:]))
    assert meta.pitch_deg == pytest.approx(-33.3) and meta.altitude_m == pytest.approx(61.5)
    assert (meta.lat, meta.lon) == pytest.approx((47.1, 8.2))
    assert "extended XMP" in meta.sources["xmp"]


HOST_PILLOW = Path("/usr/bin/python3")


@needs_photos
def test_same_reading_with_the_qgis_host_pillow():
    """QGIS on Debian 12 runs the plugin with Debian's Pillow 9.4 (no info["xmp"], fewer EXIF
    enums): every file must read the same there."""
    probe = "import PIL, numpy; print(PIL.__version__)"
    if not HOST_PILLOW.exists():
        pytest.skip("no system Python here to run the host's Pillow")
    ver = subprocess.run([HOST_PILLOW, "-c", probe], capture_output=True, text=True)
    if ver.returncode != 0 or int(ver.stdout.split(".")[0]) >= 10:
        pytest.skip(
            f"the system Python has no Pillow < 10 ({ver.stdout.strip() or ver.stderr[-80:]})"
        )
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from geobridge_qgis.core.photo import read_photo_with_meta\n"
        "out = {}\n"
        "for p in sorted(Path(sys.argv[1]).iterdir()):\n"
        "    px, m = read_photo_with_meta(p)\n"
        "    out[p.name] = [m.lat, m.lon, m.altitude_m, m.pitch_deg, m.gimbal_yaw_deg,\n"
        "                   m.flight_yaw_deg, m.focal_35mm, m.make, list(px.shape), m.notes]\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [HOST_PILLOW, "-c", script, str(PHOTOS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    host = json.loads(run.stdout)
    for name in FILES:
        px, m = read_photo_with_meta(PHOTOS / name)
        here = [m.lat, m.lon, m.altitude_m, m.pitch_deg, m.gimbal_yaw_deg, m.flight_yaw_deg,
                m.focal_35mm, m.make, list(px.shape), m.notes]  # fmt: skip
        assert host[name] == here, name
