"""Reading a synthetic world folder back (the layout `synth.py` writes): the photos' names,
their true centres and their descriptions."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geobridge_qgis.core.errors import UserError


@dataclass
class WorldData:
    root: Path
    files: list[str]
    lon: np.ndarray
    lat: np.ndarray
    texts: list[str]
    tilt_deg: np.ndarray  # the camera's true angle off nadir (nan where truth.csv has none)


def read_world(root: Path) -> WorldData:
    """The world in folder `root`: drone photo names, true centres (lon/lat), texts ("" for
    a photo without a description) and tilts (truth.csv's `pitch_deg`: degrees off nadir)."""
    root = Path(root)
    truth = root / "drone" / "truth.csv"
    if not (root / "satellite.tif").is_file() or not truth.is_file():
        raise UserError(f"{root}: not a synthetic world (needs satellite.tif and drone/truth.csv)")
    with open(truth, newline="") as f:
        rows = list(csv.DictReader(f))
    texts = {}
    desc = root / "text" / "descriptions.csv"
    if desc.is_file():
        with open(desc, newline="") as f:
            texts = {r["drone_file"]: r["text"] for r in csv.DictReader(f)}
    files = [r["file"] for r in rows]
    return WorldData(
        root,
        files,
        np.array([float(r["lon"]) for r in rows]),
        np.array([float(r["lat"]) for r in rows]),
        [texts.get(f, "") for f in files],
        np.array([float(r.get("pitch_deg") or "nan") for r in rows]),
    )
