"""`python -m synthworld synth`: a synthetic world on disk, for the demo and for tests.

    DIR/satellite.tif         the satellite-style ortho: tiled (256) YCbCr JPEG (q 85) GeoTIFF with
                              overviews 2..16, in the world's UTM CRS, pixel size = --gsd
    DIR/drone/drone_NNN.jpg   drone photos rendered from a variant of the world (another season,
                              moved cars and trees) with random drone styles; EXIF (GPS, time,
                              camera, focal length) and DJI-style XMP (gimbal yaw/pitch, flight
                              yaw, altitudes) as wrong as the error model makes them
                              (`metadata_errors.py`: GNSS error and jumps, yaw, pitch, altitude
                              above a take-off point at another ground height; a share of photos
                              with no metadata or GPS only), or none with --no-exif
    DIR/drone/truth.csv       per photo: the true centre of its footprint (lon/lat WGS 84),
                              altitude, heading, pitch, the footprint polygon (WKT, lon/lat), the
                              camera's true position and field of view, and what its metadata
                              got wrong (level, GPS error and jump, yaw, pitch, altitude errors)

Cameras look 0-35 degrees off nadir by default (the training range); --tilt-max up to 85 draws
evaluation cameras up to near the horizon (`render.cameras.oblique_camera`): the renderer draws
the ground to FAR_RANGE_M (500 m) inside the world, haze beyond, sky above the horizon, and the
footprint in truth.csv is then the visible ground within that range. --satellite-style held-out
renders the satellite image in a look no training world has (autumn, evening sun, warmer
balance).
    DIR/text/descriptions.csv per photo: a description of its footprint written from the scene
    DIR/scene.gpkg            the vector scene, one layer per feature class

The photos' metadata follows DJI's conventions (`photo_metadata.py`); truth.csv's `pitch_deg`
is the camera's tilt off nadir (0 = straight down), its `lon`/`lat` the footprint's centre.

Everything is a function of the seed: the same seed gives the same bytes (the GeoPackage too:
its timestamps are pinned with OGR_CURRENT_DATE). The folder is written to a temporary folder
beside DIR and renamed at the end, so it is complete or absent.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.gdal_mode import gdal_exceptions
from geobridge_qgis.core.outputs import check_new_folder

from .describe import describe
from .metadata_errors import MetadataErrors, draw, photo_rng, truth_columns, written_values
from .photo_metadata import save_photo
from .render import Style, random_camera, render_drone, render_ortho
from .render.cameras import (
    DRONE_ALTITUDE_M,
    DRONE_HFOV_DEG,
    DRONE_TILT_DEG,
    PHOTO_SIZE,
    oblique_camera,
)
from .render.drone import FAR_RANGE_M
from .scene_gpkg import GdalConfig, write_scene
from .world import World

TILE = 2048  # satellite rendering tile (a multiple of the 256 GeoTIFF block)
OVERVIEWS = (2, 4, 8, 16)
TRUTH_HEADER = ["file", "lon", "lat", "altitude_m", "heading_deg", "pitch_deg", "footprint_wkt",
                "camera_lon", "camera_lat", "hfov_deg", "meta_level", "gps_error_m", "gps_jump",
                "yaw_error_deg", "flight_yaw_error_deg", "pitch_error_deg", "rel_alt_error_m",
                "takeoff_dz_m"]  # fmt: skip
SATELLITE_STYLES = ("default", "held-out")
MAX_TILT_DEG = 85.0


def satellite_style(name: str, seed: int) -> Style:
    """The satellite look: "default" (every training world's) or "held-out" (never trained on)."""
    if name == "default":
        return Style.satellite(seed)
    if name == "held-out":
        return Style(seed=int(seed), season="autumn", sun_azimuth_deg=235.0,
                     sun_elevation_deg=34.0, veg_gain=(1.08, 0.96, 0.86),
                     gains=(1.05, 1.0, 0.93), saturation=1.05, haze=0.1)  # fmt: skip
    raise UserError(f"--satellite-style {name}: use one of {', '.join(SATELLITE_STYLES)}")


TEXT_HEADER = ["id", "drone_file", "text"]


def synth(
    seed: int,
    size_km: float,
    out: Path,
    gsd: float = 0.5,
    photos: int = 40,
    exif: bool = True,
    log: Callable[[str], None] = print,
    errors: MetadataErrors | None = None,
    tilt_deg: tuple[float, float] = DRONE_TILT_DEG,
    altitude_m: tuple[float, float] = DRONE_ALTITUDE_M,
    sat_style: str = "default",
) -> Path:
    """Write the world of `seed` (size_km x size_km) to the new folder `out`. Returns `out`.
    `errors`: the metadata error model (default: MetadataErrors(), a consumer drone's)."""
    errors = MetadataErrors() if errors is None else errors
    try:
        errors.check()
    except ValueError as e:
        raise UserError(f"metadata error model: {e}") from None
    if not 0 <= tilt_deg[0] <= tilt_deg[1] <= MAX_TILT_DEG:
        raise UserError(f"--tilt {tilt_deg}: use 0 <= min <= max <= {MAX_TILT_DEG:g}")
    if not 5 <= altitude_m[0] <= altitude_m[1] <= 1000:
        raise UserError(f"--altitude {altitude_m}: use 5 <= min <= max <= 1000")
    style = satellite_style(sat_style, seed)
    out = Path(out)
    check_new_folder(out)
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
        write_satellite(world, tmp / "satellite.tif", gsd, style)
        log(f"  satellite.tif: {n_px} x {n_px} px at {gsd:g} m")
        write_drone(world, tmp, photos, exif, errors, tilt_deg, altitude_m)
        log(f"  drone: {photos} photos{'' if exif else ' (no EXIF/XMP)'}, truth.csv, descriptions")
        write_scene(world, tmp / "scene.gpkg")
        log("  scene.gpkg")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}")
    return out


@gdal_exceptions()
def write_satellite(world: World, path: Path, gsd: float, style: Style) -> None:
    """The satellite GeoTIFF, rendered in tiles (bounded memory; each tile with a margin so blur
    is seamless) and written straight into the compressed file, then its overviews."""
    from osgeo import gdal, osr

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
    with GdalConfig(GDAL_PAM_ENABLED="NO", JPEG_QUALITY_OVERVIEW="85"):
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


def write_drone(
    world: World,
    folder: Path,
    photos: int,
    exif: bool,
    errors: MetadataErrors | None = None,
    tilt_deg: tuple[float, float] = DRONE_TILT_DEG,
    altitude_m: tuple[float, float] = DRONE_ALTITUDE_M,
) -> None:
    """Photos from a variant of the world, truth.csv and the photos' descriptions."""
    errors = MetadataErrors() if errors is None else errors
    (folder / "drone").mkdir()
    (folder / "text").mkdir()
    variant = world.variant(world.seed + 1)
    rng = np.random.default_rng([world.seed, 20])
    start = dt.datetime(2025, 4, 1, 9, 0, 0) + dt.timedelta(
        days=int(rng.integers(0, 150)), seconds=int(rng.integers(0, 6 * 3600))
    )
    when = start
    oblique = tilt_deg[1] > DRONE_TILT_DEG[1]
    truth_rows, text_rows = [], []
    for i in range(photos):
        name = f"drone_{i:03d}.jpg"
        if oblique:
            cam = oblique_camera(variant, rng, PHOTO_SIZE, altitude_m, tilt_deg, DRONE_HFOV_DEG,
                                 FAR_RANGE_M)  # fmt: skip
        else:
            cam = random_camera(variant, rng, PHOTO_SIZE, altitude_m, tilt_deg, DRONE_HFOV_DEG)
        style = Style.random_drone(rng)
        img, fp = render_drone(
            variant, cam, style, PHOTO_SIZE, rng=np.random.default_rng([world.seed, 21, i])
        )
        # Drawn as before the error model existed, so a world's cameras stay where they were;
        # only the flight pitch and roll are still used.
        rng.uniform(0.0, 2 * math.pi), rng.uniform(2.0, 10.0), rng.normal(0.0, 1.5)
        rng.normal(0.0, 0.3)
        flight = (rng.normal(0.0, 3.0), rng.normal(0.0, 2.0), rng.normal(0.0, 2.0))
        when = when + dt.timedelta(seconds=int(rng.integers(4, 40)))
        noise = draw(errors, photo_rng(world.seed, i))
        v = written_values(cam, noise, world.ground_elevation_m)
        lon, lat = world.to_lonlat(v["gx"], v["gy"])
        meta = {
            "lon": float(lon),
            "lat": float(lat),
            "gps_alt": v["gps_alt"],
            "rel_alt": v["rel_alt"],
            "yaw": v["yaw"],
            "flight_yaw": v["flight_yaw"],
            "pitch": v["pitch"],
            "when": when,
            "flight": flight,
        }
        path = folder / "drone" / name
        level = noise.level if exif else "none"
        save_photo(path, img, cam, meta if level != "none" else None, xmp=level == "full")
        cx, cy = cam.centre_ground()
        clon, clat = world.to_lonlat(cx, cy)
        flon, flat = world.to_lonlat(*np.asarray(fp.exterior.coords).T)
        wkt = "POLYGON ((" + ", ".join(f"{a:.8f} {b:.8f}" for a, b in zip(flon, flat, strict=True))
        camlon, camlat = world.to_lonlat(cam.x, cam.y)
        cols = truth_columns(noise)
        cols["meta_level"] = level
        truth_rows.append(
            [
                name,
                f"{clon:.8f}",
                f"{clat:.8f}",
                f"{cam.altitude_m:.2f}",
                f"{cam.heading_deg:.3f}",
                f"{cam.tilt_deg:.3f}",
                wkt + "))",
                f"{camlon:.8f}",
                f"{camlat:.8f}",
                f"{cam.hfov_deg:.3f}",
                *cols.values(),
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
