"""`make package`: the plugin zip the QGIS plugin repository expects.

dist/geobridge_qgis-<version>.zip holds one folder, geobridge_qgis/, with the Python sources,
metadata.txt (a real file, not the repository's link), LICENSE, and resources/icons and
resources/styles. Not inside: the demo bundle and world (ONNX binaries, tens of MB: the plugin
repository forbids binaries and caps zips at 25 MB), tests, caches, compiled files.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "geobridge_qgis"
MAX_BYTES = 25 * 1024 * 1024
RESOURCE_DIRS = ("icons", "styles")
SOURCE_SUFFIXES = {".py", ".qml", ".svg", ".png", ".txt", ".ui"}


def version() -> str:
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    return meta["general"]["version"]


def plugin_files() -> list[tuple[Path, str]]:
    """(file on disk, path inside the zip)."""
    files = [(ROOT / "metadata.txt", "geobridge_qgis/metadata.txt"),
             (ROOT / "LICENSE", "geobridge_qgis/LICENSE")]  # fmt: skip
    for path in sorted(PLUGIN.rglob("*")):
        rel = path.relative_to(PLUGIN)
        if rel.parts[0] in ("resources", "metadata.txt") or "__pycache__" in rel.parts:
            continue
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            files.append((path, f"geobridge_qgis/{rel.as_posix()}"))
    for sub in RESOURCE_DIRS:
        for path in sorted((ROOT / "resources" / sub).rglob("*")):
            if path.is_file():
                rel = path.relative_to(ROOT / "resources")
                files.append((path, f"geobridge_qgis/resources/{rel.as_posix()}"))
    return files


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"geobridge_qgis-{version()}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in plugin_files():
            z.write(path, name)
    if tmp.stat().st_size > MAX_BYTES:
        tmp.unlink()
        raise SystemExit(f"{target}: over the plugin repository's 25 MB limit")
    tmp.replace(target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    zip_path = build(ap.parse_args().out)
    print(f"wrote {zip_path} ({zip_path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
