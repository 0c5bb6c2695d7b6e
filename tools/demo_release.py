"""`make demo-release`: the demo model and world as the release asset the plugin downloads.

Writes dist/geobridge-demo.zip (`bundle/` = resources/demo/bundle, `world/` =
resources/demo/world) and dist/geobridge-demo.zip.sha256 (`sha256sum` format). Upload both to
the GitHub release `v<version>` (version from metadata.txt): the plugin's default download URL
is `https://github.com/geobridge-qgis/geobridge-qgis/releases/download/v<version>/geobridge-demo.zip`
and it checks the zip against the companion `.sha256`.

The zip is reproducible: entries sorted, fixed timestamps and permissions, so the same demo
gives the same bytes and the same checksum on any machine (anyone can check a release asset
against the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
NAME = "geobridge-demo.zip"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def _entries(folders: dict[str, Path]) -> list[tuple[Path, str]]:
    entries = []
    for prefix, folder in folders.items():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                entries.append((path, f"{prefix}/{path.relative_to(folder).as_posix()}"))
    return sorted(entries, key=lambda e: e[1])


def build_zip(
    out: Path, bundle: Path = DEMO / "bundle", world: Path | None = DEMO / "world"
) -> str:
    """Write the zip at `out` and `out`.sha256 beside it; the zip's sha256."""
    if not (bundle / "manifest.json").is_file():
        raise SystemExit(f"{bundle}: not a GeoBridge bundle (no manifest.json)")
    folders = {"bundle": bundle}
    if world is not None:
        folders["world"] = world
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in _entries(folders):
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, z.open(info, "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    digest = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    tmp.replace(out)
    sha = digest.hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{sha}  {out.name}\n")
    return sha


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="folder (default dist/)")
    out = ap.parse_args().out / NAME
    sha = build_zip(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
