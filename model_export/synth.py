"""`python -m model_export synth`: a synthetic world on disk, for the demo and for tests.

    DIR/satellite.tif         the satellite-style ortho: tiled (256) YCbCr JPEG (q 85) GeoTIFF with
                              overviews 2..16, in the world's UTM CRS, pixel size = --gsd
    DIR/drone/drone_NNN.jpg   drone photos rendered from a variant of the world (another season,
                              moved cars and trees) with random drone styles; EXIF (GPS with a few
                              metres of error, time, camera, focal length) and DJI-style XMP
                              (gimbal yaw/pitch, altitudes) unless --no-exif
    DIR/drone/truth.csv       per photo: the true centre of its footprint (lon/lat WGS 84),
                              altitude, heading, pitch, the footprint polygon (WKT, lon/lat)
    DIR/text/descriptions.csv per photo: a description of its footprint written from the scene
    DIR/scene.gpkg            the vector scene, one layer per feature class

Conventions of the metadata, as DJI writes them: EXIF GPS is the drone's position (not the
footprint's centre: at pitch p the centre lies altitude * tan(p) ahead along the heading);
`drone-dji:GimbalYawDegree` is the heading in -180..180 (clockwise from north);
`drone-dji:GimbalPitchDegree` is -90 at nadir; `FocalLengthIn35mmFilm` follows the diagonal
field of view (43.27 mm full-frame diagonal).

Everything is a function of the seed: the same seed gives the same bytes (the GeoPackage too:
its timestamps are pinned with OGR_CURRENT_DATE). The folder is written to a temporary folder
beside DIR and renamed at the end, so it is complete or absent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely
from PIL import Image, TiffImagePlugin
from shapely.geometry import Point, Polygon

from geobridge_qgis.core.errors import UserError

from . import __version__
from .render import Camera, Style, random_camera, render_drone, render_ortho
from .world import LAYERS, World, feature_geometry

PHOTO_SIZE = (640, 480)
# Drone cameras of the demo photos and of training: footprints of about 70-240 m across, the
# scale of the engine's 100 m and 150 m chips (GeoLoc's satellite crops are 80-180 m).
DRONE_ALTITUDE_M = (60.0, 150.0)
DRONE_PITCH_DEG = (0.0, 35.0)
DRONE_HFOV_DEG = (60.0, 75.0)
SENSOR_WIDTH_MM = 13.2  # a 1-inch sensor's width
FULL_FRAME_DIAGONAL_MM = 43.2666
TILE = 2048  # satellite rendering tile (a multiple of the 256 GeoTIFF block)
OVERVIEWS = (2, 4, 8, 16)
OGR_DATE = "2026-01-01T00:00:00Z"
MAKE = "GeoBridgeSynth"
MODEL = "SynthCam 1in"
TRUTH_HEADER = ["file", "lon", "lat", "altitude_m", "heading_deg", "pitch_deg", "footprint_wkt"]
TEXT_HEADER = ["id", "drone_file", "text"]


def synth(
    seed: int,
    size_km: float,
    out: Path,
    gsd: float = 0.5,
    photos: int = 40,
    exif: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the world of `seed` (size_km x size_km) to the new folder `out`. Returns `out`."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: already exists; choose a new output folder")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UserError(f"{out.parent}: not a writable folder")
    if not 0.2 <= size_km <= 10.0:
        raise UserError(f"--size-km {size_km}: use 0.2 to 10")
    if not 0.1 <= gsd <= 10.0:
        raise UserError(f"--gsd {gsd}: use 0.1 to 10 (metres per pixel)")
    if not 0 <= photos <= 100000:
        raise UserError(f"--photos {photos}: use 0 to 100000")
    # The world is a whole number of pixels.
    n_px = round(size_km * 1000.0 / gsd)
    if n_px > 60000:
        raise UserError(f"{size_km} km at {gsd} m is {n_px} pixels across; use a larger --gsd")
    world = World.generate(seed, n_px * gsd)
    log(
        f"world {seed}: {world.size_m:g} m square at lon {world.centre_lonlat[0]:.4f} "
        f"lat {world.centre_lonlat[1]:.4f}, EPSG:{world.epsg}; {len(world.buildings)} buildings, "
        f"{len(world.fields)} fields, {len(world.roads)} roads"
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is a normal folder
    try:
        write_satellite(world, tmp / "satellite.tif", gsd, Style.satellite(seed))
        log(f"  satellite.tif: {n_px} x {n_px} px at {gsd:g} m")
        write_drone(world, tmp, photos, exif)
        log(f"  drone: {photos} photos{'' if exif else ' (no EXIF/XMP)'}, truth.csv, descriptions")
        write_scene(world, tmp / "scene.gpkg")
        log("  scene.gpkg")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}")
    return out


# ---------------------------------------------------------------------------------- satellite


class _GdalConfig:
    """Set GDAL config options for a block and put the old values back."""

    def __init__(self, **options: str):
        self.options = options

    def __enter__(self):
        from osgeo import gdal

        self.old = {k: gdal.GetConfigOption(k) for k in self.options}
        for k, v in self.options.items():
            gdal.SetConfigOption(k, v)

    def __exit__(self, *exc):
        from osgeo import gdal

        for k, v in self.old.items():
            gdal.SetConfigOption(k, v)


def write_satellite(world: World, path: Path, gsd: float, style: Style) -> None:
    """The satellite GeoTIFF, rendered in tiles (bounded memory; each tile with a margin so blur
    is seamless) and written straight into the compressed file, then its overviews."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    xmin, _, xmax, ymax = world.bounds
    n = round((xmax - xmin) / gsd)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(world.epsg)
    options = [
        "TILED=YES",
        "BLOCKXSIZE=256",
        "BLOCKYSIZE=256",
        "COMPRESS=JPEG",
        "PHOTOMETRIC=YCBCR",
        "JPEG_QUALITY=85",
        "INTERLEAVE=PIXEL",
        "BIGTIFF=IF_SAFER",
    ]
    with _GdalConfig(GDAL_PAM_ENABLED="NO", JPEG_QUALITY_OVERVIEW="85"):
        ds = gdal.GetDriverByName("GTiff").Create(str(path), n, n, 3, gdal.GDT_Byte, options)
        ds.SetProjection(srs.ExportToWkt())
        ds.SetGeoTransform((xmin, gsd, 0.0, ymax, 0.0, -gsd))
        margin = 16
        for ti, r0 in enumerate(range(0, n, TILE)):
            for tj, c0 in enumerate(range(0, n, TILE)):
                rows, cols = min(TILE, n - r0), min(TILE, n - c0)
                bounds = (
                    xmin + (c0 - margin) * gsd,
                    ymax - (r0 + rows + margin) * gsd,
                    xmin + (c0 + cols + margin) * gsd,
                    ymax - (r0 - margin) * gsd,
                )
                rng = np.random.default_rng([world.seed, 11, ti, tj])
                tile = render_ortho(world, gsd, style, bounds, rng=rng)
                tile = tile[margin : margin + rows, margin : margin + cols]
                ds.WriteArray(np.ascontiguousarray(tile.transpose(2, 0, 1)), c0, r0)
        levels = [f for f in OVERVIEWS if n // f >= 8]
        if levels:
            ds.BuildOverviews("AVERAGE", levels)
        ds.FlushCache()
        ds = None


# -------------------------------------------------------------------------------------- drone


def write_drone(world: World, folder: Path, photos: int, exif: bool) -> None:
    """Photos from a variant of the world, truth.csv and the photos' descriptions."""
    (folder / "drone").mkdir()
    (folder / "text").mkdir()
    variant = world.variant(world.seed + 1)
    rng = np.random.default_rng([world.seed, 20])
    start = dt.datetime(2025, 4, 1, 9, 0, 0) + dt.timedelta(
        days=int(rng.integers(0, 150)), seconds=int(rng.integers(0, 6 * 3600))
    )
    when = start
    truth_rows, text_rows = [], []
    for i in range(photos):
        name = f"drone_{i:03d}.jpg"
        cam = random_camera(
            variant, rng, PHOTO_SIZE, DRONE_ALTITUDE_M, DRONE_PITCH_DEG, DRONE_HFOV_DEG
        )
        style = Style.random_drone(rng)
        img, fp = render_drone(
            variant, cam, style, PHOTO_SIZE, rng=np.random.default_rng([world.seed, 21, i])
        )
        # GPS error: a few metres to ~10 m, horizontal; a metre or two vertical.
        err_ang, err_m = rng.uniform(0.0, 2 * math.pi), rng.uniform(2.0, 10.0)
        gx, gy = cam.x + err_m * math.sin(err_ang), cam.y + err_m * math.cos(err_ang)
        alt_err, baro_err = rng.normal(0.0, 1.5), rng.normal(0.0, 0.3)
        flight = (rng.normal(0.0, 3.0), rng.normal(0.0, 2.0), rng.normal(0.0, 2.0))
        when = when + dt.timedelta(seconds=int(rng.integers(4, 40)))
        lon, lat = world.to_lonlat(gx, gy)
        meta = {
            "lon": float(lon),
            "lat": float(lat),
            "gps_alt": world.ground_elevation_m + cam.altitude_m + alt_err,
            "rel_alt": cam.altitude_m + baro_err,
            "when": when,
            "flight": flight,
        }
        path = folder / "drone" / name
        _save_photo(path, img, cam, meta if exif else None)
        cx, cy = cam.centre_ground()
        clon, clat = world.to_lonlat(cx, cy)
        flon, flat = world.to_lonlat(*np.asarray(fp.exterior.coords).T)
        wkt = "POLYGON ((" + ", ".join(f"{a:.8f} {b:.8f}" for a, b in zip(flon, flat, strict=True))
        truth_rows.append(
            [
                name,
                f"{clon:.8f}",
                f"{clat:.8f}",
                f"{cam.altitude_m:.2f}",
                f"{cam.heading_deg:.3f}",
                f"{cam.pitch_deg:.3f}",
                wkt + "))",
            ]
        )
        text = describe(world, fp, np.random.default_rng([world.seed, 22, i]))
        text_rows.append([f"d{i:03d}", name, text])
    _write_csv(folder / "drone" / "truth.csv", TRUTH_HEADER, truth_rows)
    _write_csv(folder / "text" / "descriptions.csv", TEXT_HEADER, text_rows)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def focal_lengths(hfov_deg: float, size: tuple[int, int] = PHOTO_SIZE) -> tuple[float, int]:
    """(focal length in mm on the 1-inch sensor, 35 mm equivalent by the diagonal)."""
    w, h = size
    t = math.tan(math.radians(hfov_deg) / 2)
    f_mm = SENSOR_WIDTH_MM / 2 / t
    t_diag = t * math.hypot(w, h) / w
    return f_mm, round(FULL_FRAME_DIAGONAL_MM / 2 / t_diag)


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
    yaw = (cam.heading_deg + 180.0) % 360.0 - 180.0
    fy, fp, fr = meta["flight"]
    flight_yaw = (yaw + fy + 180.0) % 360.0 - 180.0
    attrs = {
        "drone-dji:AbsoluteAltitude": _signed(meta["gps_alt"]),
        "drone-dji:RelativeAltitude": _signed(meta["rel_alt"]),
        "drone-dji:GimbalRollDegree": "+0.00",
        "drone-dji:GimbalYawDegree": _signed(yaw),
        "drone-dji:GimbalPitchDegree": _signed(cam.pitch_deg - 90.0),
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


def _save_photo(path: Path, img: np.ndarray, cam: Camera, meta: dict | None) -> None:
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
    ex[0x0131] = f"GeoBridge model_export {__version__}"
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
    im.save(buf, "JPEG", quality=90, exif=ex, xmp=_xmp(cam, meta))
    path.write_bytes(buf.getvalue())


# -------------------------------------------------------------------------------------- scene


# Layer -> fields (name, OGR type), in order; every layer has its fields even when empty.
_SCHEMA = {
    "roads": [("kind", "String"), ("width_m", "Real")],
    "roundabouts": [("radius_m", "Real"), ("width_m", "Real")],
    "rivers": [("width_m", "Real")],
    "lakes": [("area_m2", "Real")],
    "fields": [
        ("crop", "String"),
        ("row_angle_deg", "Real"),
        ("spacing_m", "Real"),
        ("tramline_m", "Real"),
        ("tone", "Real"),
    ],
    "forests": [("kind", "String")],
    "trees": [("kind", "String"), ("crown_radius_m", "Real"), ("height_m", "Real")],
    "hedges": [("width_m", "Real")],
    "buildings": [
        ("use", "String"),
        ("roof", "String"),
        ("height_m", "Real"),
        ("gable", "Integer"),
        ("parts", "Integer"),
    ],
    "surfaces": [("kind", "String")],
    "parkings": [("stall_rows", "Integer"), ("stalls", "Integer"), ("cars", "Integer")],
    "sports": [("kind", "String"), ("surface", "String"), ("courts", "Integer")],
    "cars": [("colour", "String"), ("angle_deg", "Real")],
}
_GEOM_TYPES = {
    "trees": "Point",
    "roads": "LineString",
    "rivers": "LineString",
    "hedges": "LineString",
}


def _scene_attributes(layer: str, f) -> list:
    """The feature's values for `_SCHEMA[layer]`, in order."""
    values = {
        "roads": lambda: [f.kind, f.width_m],
        "roundabouts": lambda: [f.radius_m, f.width_m],
        "rivers": lambda: [f.width_m],
        "hedges": lambda: [f.width_m],
        "lakes": lambda: [f.polygon.area],
        "fields": lambda: [f.crop, f.row_angle_deg, f.spacing_m, f.tramline_m, f.tone],
        "forests": lambda: [f.kind],
        "trees": lambda: [f.kind, f.crown_radius_m, f.height_m],
        "buildings": lambda: [f.use, f.roof, f.height_m, int(f.gable), len(f.parts)],
        "surfaces": lambda: [f.kind],
        "parkings": lambda: [f.rows, len(f.stalls()), len(f.cars)],
        "sports": lambda: [f.kind, f.surface, f.courts],
        "cars": lambda: [f.colour, f.angle_deg],
    }
    return values[layer]()


def write_scene(world: World, path: Path) -> None:
    """The vector scene as a GeoPackage: one layer per feature class (plus `cars`), with the
    attributes the generator knows, in the world's CRS."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(world.epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ogr_geom = {"Point": ogr.wkbPoint, "LineString": ogr.wkbLineString, "Polygon": ogr.wkbPolygon}
    with _GdalConfig(OGR_CURRENT_DATE=OGR_DATE, GDAL_PAM_ENABLED="NO"):
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        for layer in (*LAYERS, "cars"):
            items = list(world.cars) if layer == "cars" else list(getattr(world, layer))
            gtype = ogr_geom[_GEOM_TYPES.get(layer, "Polygon")]
            lyr = ds.CreateLayer(layer, srs, gtype, ["SPATIAL_INDEX=NO"])
            for name, kind in _SCHEMA[layer]:
                lyr.CreateField(ogr.FieldDefn(name, getattr(ogr, f"OFT{kind}")))
            defn = lyr.GetLayerDefn()
            lyr.StartTransaction()
            for f in items:
                feat = ogr.Feature(defn)
                for (name, _), value in zip(
                    _SCHEMA[layer], _scene_attributes(layer, f), strict=True
                ):
                    feat.SetField(name, round(value, 3) if isinstance(value, float) else value)
                g = f.rect().polygon() if layer == "cars" else feature_geometry(f)
                feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(g)))
                lyr.CreateFeature(feat)
            lyr.CommitTransaction()
        ds = None


# ------------------------------------------------------------------------------- descriptions

_LANDMARK = 8.0  # phrases at least this salient always make it into a description
_NUMBERS = "no one two three four five six seven eight nine ten eleven twelve".split()
_COMPASS = [
    "north",
    "north-east",
    "east",
    "south-east",
    "south",
    "south-west",
    "west",
    "north-west",
]
_ROOF_WORDS = {"red": "red", "brown": "brown", "grey": "grey", "dark": "dark", "white": "white"}
_CROP_WORDS = {
    "wheat": ["a golden wheat field", "a wheat field", "a yellow cereal field"],
    "barley": ["a barley field", "a pale cereal field"],
    "maize": ["a maize field", "a green maize field", "a field of corn"],
    "rapeseed": ["a rapeseed field", "an oilseed rape field"],
    "grassland": ["a meadow", "a grass field", "grassland"],
    "potato": ["a potato field with ridges", "a potato field"],
    "sunflower": ["a sunflower field"],
    "ploughed": ["a ploughed brown field", "a bare ploughed field", "a freshly ploughed field"],
}


def _count(n: int) -> str:
    if n < len(_NUMBERS):
        return _NUMBERS[n]
    if n < 20:
        return "more than a dozen" if n > 13 else "about a dozen"
    return f"about {round(n, -1)}" if n < 100 else "many"


def _compass(dx: float, dy: float) -> str:
    ang = math.degrees(math.atan2(dx, dy)) % 360.0
    return _COMPASS[round(ang / 45.0) % 8]


def _where(pt, centre: Point, scale: float) -> str | None:
    dx, dy = pt.x - centre.x, pt.y - centre.y
    if math.hypot(dx, dy) < 0.18 * scale:
        return None
    return _compass(dx, dy)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def scene_facts(world: World, footprint: Polygon) -> dict:
    """What is inside a footprint, counted from the scene (the input of `describe`)."""
    fp = footprint
    bbox = fp.bounds
    area = fp.area
    facts: dict = {"area_m2": area}
    blds = [b for b in world.query("buildings", bbox) if fp.contains(b.footprint.centroid)]
    facts["buildings"] = blds
    roads = []
    for r in world.query("roads", bbox):
        clip = r.line.intersection(fp)
        if clip.length > 25.0:
            roads.append((r, clip))
    facts["roads"] = roads
    facts["roundabouts"] = [
        rb for rb in world.query("roundabouts", bbox) if fp.contains(Point(rb.x, rb.y))
    ]
    facts["river"] = [
        r for r in world.query("rivers", bbox) if r.line.intersection(fp).length > 20.0
    ]
    facts["lakes"] = [
        lk for lk in world.query("lakes", bbox) if lk.polygon.intersection(fp).area > 150.0
    ]
    fields = []
    for f in world.query("fields", bbox):
        a = f.polygon.intersection(fp)
        if a.area > max(1500.0, 0.06 * area):
            fields.append((f, a))
    facts["fields"] = fields
    forest = [(f, f.polygon.intersection(fp)) for f in world.query("forests", bbox)]
    facts["forest"] = [(f, a) for f, a in forest if a.area > max(800.0, 0.06 * area)]
    facts["trees"] = [t for t in world.query("trees", bbox) if fp.contains(Point(t.x, t.y))]
    facts["parkings"] = [
        p for p in world.query("parkings", bbox) if fp.contains(Point(p.rect.cx, p.rect.cy))
    ]
    facts["sports"] = [
        s for s in world.query("sports", bbox) if fp.contains(Point(s.rect.cx, s.rect.cy))
    ]
    facts["hedges"] = [
        h for h in world.query("hedges", bbox) if h.line.intersection(fp).length > 20.0
    ]
    return facts


def describe(world: World, footprint: Polygon | np.ndarray, rng: np.random.Generator) -> str:
    """A description of what a footprint shows, from the scene's semantics: counts, roof
    colours, crops, relative positions (compass directions from the footprint's centre, sides
    of the road), sizes; phrased from several templates in random orders."""
    fp = footprint if isinstance(footprint, Polygon) else Polygon(np.asarray(footprint))
    facts = scene_facts(world, fp)
    centre = fp.centroid
    scale = math.sqrt(fp.area)
    items: list[tuple[float, str]] = []  # (salience, phrase)

    # Roads first: the other things are placed relative to the main one.
    road, road_clip = None, None
    paved = [(r, c) for r, c in facts["roads"] if r.kind in ("main", "street")]
    if paved:
        road, road_clip = max(paved, key=lambda rc: (rc[0].kind == "main", rc[1].length))
    blds = facts["buildings"]
    if blds:
        houses = [b for b in blds if b.use in ("house", "farm")]
        big = [b for b in blds if b.use in ("industrial",) or b.footprint.area > 700]
        civic = [b for b in blds if b.use == "civic" and b.height_m > 25]
        roofs = Counter(b.roof for b in houses or blds).most_common(2)
        (roof, n_roof), second = roofs[0], roofs[1][0] if len(roofs) > 1 else None
        n = len(houses)
        if n:
            noun = "house" if n == 1 else _pick(rng, ["houses", "houses", "homes", "buildings"])
            if n_roof >= 0.6 * n or second is None:
                adj = _pick(rng, [f"{_ROOF_WORDS[roof]}-roofed ", f"{_ROOF_WORDS[roof]} roofed "])
                phrase = f"{_count(n)} {adj}{noun}"
            elif rng.random() < 0.5:
                phrase = f"{_count(n)} {noun} with {roof} and {second} roofs"
            else:
                phrase = f"{_count(n)} {noun}, mostly with {roof} roofs"
            if n == 1:
                phrase = phrase.replace("one ", "a ", 1)
            side = _side_of_road(houses, road_clip) if road_clip is not None else None
            if side:
                phrase += f" {side} of the road" if side != "both" else " on both sides of the road"
            else:
                w = _where(
                    shapely.centroid(shapely.union_all([b.footprint for b in houses])),
                    centre,
                    scale,
                )
                if w:
                    phrase += f" in the {w}"
            items.append((10.0 + n, phrase))
        if big:
            roof_b = Counter(b.roof for b in big).most_common(1)[0][0]
            what = "a large hall" if len(big) == 1 else f"{_count(len(big))} large halls"
            w = _where(big[0].footprint.centroid, centre, scale)
            items.append(
                (
                    9.0,
                    f"{what} with {_ROOF_WORDS[roof_b]} flat roofs" + (f" to the {w}" if w else ""),
                )
            )
        if civic:
            items.append((9.5, "a church with a tall tower"))
    if road is not None:
        straight = _sinuosity(road_clip) < 1.03
        adj = "straight" if straight else _pick(rng, ["curved", "winding", "bending"])
        noun = "main road" if road.kind == "main" else _pick(rng, ["street", "road"])
        phrase = f"a {adj} {noun}"
        d = _direction(road_clip)
        if d:
            phrase += f" running {d}"
        n_other = len(paved) - 1
        if n_other >= 2:
            phrase += f" with {_count(n_other)} side streets"
        elif n_other == 1:
            phrase += " and a side street"
        items.append((8.0, phrase))
        if road.kind == "main" and rng.random() < 0.5:
            items.append((2.0, "white lane markings"))
    tracks = [c for r, c in facts["roads"] if r.kind == "track"]
    if tracks:
        items.append(
            (3.0, "a dirt track" if len(tracks) == 1 else f"{_count(len(tracks))} farm tracks")
        )
    if facts["roundabouts"]:
        items.append((9.0, "a roundabout"))
    if facts["river"]:
        bridge = any(r.line.intersects(facts["river"][0].line) for r, _ in facts["roads"])
        items.append((8.5, "a river" + (" with a bridge" if bridge else "")))
    if facts["lakes"]:
        lk = facts["lakes"][0]
        size = "a small pond" if lk.polygon.area < 5000 else "a lake"
        w = _where(lk.polygon.centroid, centre, scale)
        items.append((8.0, size + (f" to the {w}" if w else "")))
    for s in facts["sports"]:
        if s.kind == "football":
            items.append((9.0, _pick(rng, ["a football pitch", "a soccer field with white lines"])))
        else:
            colour = {"clay": "red", "hard-green": "green", "hard-blue": "blue"}[s.surface]
            what = "a tennis court" if s.courts == 1 else f"{_count(s.courts)} tennis courts"
            items.append((7.0, f"{what} ({colour})" if rng.random() < 0.5 else what))
    for p in facts["parkings"]:
        n = len(p.cars)
        items.append((6.0, f"a car park with {_count(n)} cars" if n else "an empty car park"))
    if facts["fields"]:
        fields = sorted(facts["fields"], key=lambda fa: -fa[1].area)[:3]
        for f, a in fields:
            w = _where(a.centroid, centre, scale)
            phrase = _pick(rng, _CROP_WORDS[f.crop])
            if a.area > 0.3 * fp.area and rng.random() < 0.5:
                phrase = phrase.replace("a ", "a large ", 1) if phrase.startswith("a ") else phrase
            if rng.random() < 0.3 and f.crop not in ("grassland",):
                phrase += " with stripes"
            items.append((5.0 + a.area / fp.area, phrase + (f" to the {w}" if w else "")))
        if len(facts["fields"]) > 3:
            items.append((4.0, f"{_count(len(facts['fields']))} fields in a patchwork"))
    if facts["forest"]:
        a = shapely.union_all([g for _, g in facts["forest"]])
        share = a.area / fp.area
        w = _where(a.centroid, centre, scale)
        kinds = {f.kind for f, _ in facts["forest"]}
        word = (
            "pine forest" if kinds == {"conifer"} else _pick(rng, ["woodland", "forest", "woods"])
        )
        what = f"dense {word}" if share > 0.5 else f"a patch of {word}"
        items.append((7.0 + share, what + (f" in the {w}" if w else "")))
    n_trees = len(facts["trees"])
    if n_trees:
        t = "a single tree" if n_trees == 1 else f"{_count(n_trees)} scattered trees"
        if n_trees > 12:
            t = "many trees"
        items.append((3.0, t))
    if facts["hedges"]:
        items.append((2.5, "hedgerows" if len(facts["hedges"]) > 1 else "a hedge"))
    if not items:
        return "Open grassland with nothing else in view."
    return _compose(items, rng)


def _compose(items: list[tuple[float, str]], rng: np.random.Generator) -> str:
    items = sorted(items, key=lambda it: -it[0])
    head = items[0][1]
    # Landmarks (water, roundabouts, pitches, churches, main roads...) are always named; the
    # rest fills up to a few phrases, in a random order.
    must = [p for w, p in items[1:] if w >= _LANDMARK]
    other = [p for w, p in items[1:] if w < _LANDMARK][:4]
    n_other = max(0, int(rng.integers(2, 5)) - len(must))
    pick = sorted(rng.permutation(len(other))[:n_other].tolist())
    rest = must + [other[i] for i in pick]
    rest = [rest[int(i)] for i in rng.permutation(len(rest))]
    if not rest:
        text = _pick(rng, [f"{head}.", f"Aerial view of {head}.", f"Only {head} in view."])
    elif len(rest) == 1:
        text = _pick(
            rng,
            [f"{head} and {rest[0]}.", f"{head}, next to {rest[0]}.", f"{rest[0]} beside {head}."],
        )
    else:
        listed = ", ".join(rest[:-1]) + f" and {rest[-1]}"
        text = _pick(
            rng,
            [
                f"{head}, with {listed}.",
                f"{head}; nearby {listed}.",
                f"Aerial view: {head}, {listed}.",
                f"{listed}, near {head}.",
                f"Look for {head}. Also visible: {listed}.",
            ],
        )
    return text[0].upper() + text[1:]


def _sinuosity(line) -> float:
    parts = getattr(line, "geoms", [line])
    part = max(parts, key=lambda g: g.length)
    c = np.asarray(part.coords)
    d = float(np.hypot(*(c[-1] - c[0])))
    return part.length / max(d, 1e-6)


def _direction(line) -> str | None:
    parts = getattr(line, "geoms", [line])
    part = max(parts, key=lambda g: g.length)
    c = np.asarray(part.coords)
    dx, dy = c[-1] - c[0]
    if math.hypot(dx, dy) < 1.0:
        return None
    ang = math.degrees(math.atan2(dx, dy)) % 180.0
    if ang < 22.5 or ang >= 157.5:
        return "north-south"
    if ang < 67.5:
        return "north-east to south-west"
    if ang < 112.5:
        return "east-west"
    return "north-west to south-east"


def _side_of_road(buildings, road_clip) -> str | None:
    """'north' (etc.) when most buildings lie on one side of the road, 'both' when on both."""
    sides = []
    for b in buildings:
        c = b.footprint.centroid
        p = road_clip.interpolate(road_clip.project(c))
        dx, dy = c.x - p.x, c.y - p.y
        if math.hypot(dx, dy) > 60.0:
            continue
        ang = math.degrees(math.atan2(dx, dy)) % 360.0
        sides.append(["north", "east", "south", "west"][round(ang / 90.0) % 4])
    if len(sides) < 2:
        return None
    side, n = Counter(sides).most_common(1)[0]
    if n >= 0.8 * len(sides):
        return side
    return "both" if n <= 0.65 * len(sides) else None
