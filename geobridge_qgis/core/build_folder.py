"""The one folder for an index build's inputs: derived from the raster's identity, the region,
the chip grid, the tower and the model, so that building again after a cancel or a crash finds
its own `.partial` shards and resumes, and a finished build is found again instead of redone.
`request` is a `core.service.IndexRequest`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def index_identity(request: Any, source_id: str | None = None) -> dict:
    """What makes two builds the same build: the raster's identity, region, grid, tower and
    model. A file is known by its resolved path, size and modification time (a raster rewritten
    in place is another raster); anything else by `source_id` or its source string."""
    from .bundle import Bundle

    raster = str(request.raster)
    if source_id is None:
        source_id = raster
        if Path(raster).is_file():
            st = Path(raster).stat()
            source_id = f"{Path(raster).resolve()}|{st.st_size}|{int(st.st_mtime)}"
    return {
        "source": source_id,
        "region": _region_key(request.region),
        "chip_sizes": [float(s) for s in request.chip_sizes],
        "overlap": float(request.overlap),
        "tower": request.tower,
        "model_id": Bundle.load(request.bundle, check_files=False).model_id,
    }


def _region_key(region: Any) -> Any:
    from .tiling import Region

    if region is None:
        return None
    if isinstance(region, Region):
        if region.geometry is None:
            return None
        return [region.geometry.ExportToWkt(), region.crs.to_wkt() if region.crs else None]
    if isinstance(region, Path):
        st = region.stat() if region.is_file() else None
        return [str(region.resolve()), st.st_size if st else 0, int(st.st_mtime) if st else 0]
    if isinstance(region, tuple):
        return [str(part) for part in region]
    return str(region)


def index_folder_for(
    request: Any, root: Path | str, name: str | None = None, source_id: str | None = None
) -> Path:
    """`<root>/<name>-<hash>`: the one folder for this build's inputs (`index_identity`), so
    that building again after a cancel or a crash resumes from its `.partial` shards instead
    of starting over. `name` (default: the raster's stem) only makes the folder readable."""
    import hashlib
    import json

    identity = json.dumps(index_identity(request, source_id), sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    stem = name if name is not None else Path(str(request.raster)).stem
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "index"
    return Path(root) / f"{stem}-{digest}"
