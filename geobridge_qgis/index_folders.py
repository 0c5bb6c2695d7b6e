"""Where the plugin keeps the index of a layer: one folder per build's inputs.

The folder is named from the layer and a hash of what makes the build (the raster's identity,
the region, the chip grid, the tower and the model: `core.service.index_folder_for`), so a
build cancelled or cut short by a crash and started again with the same inputs writes to the
same `<folder>.partial` and resumes after its last saved shard, and a finished one is found
again instead of being rebuilt. Indexes go to the GeoBridge setting's folder, else to the QGIS
profile's `geobridge/indexes` (QGIS's temporary folder would not outlive the session, and a
resume has to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsRasterLayer

from . import settings
from .core import defaults


def index_root() -> Path:
    """The folder the plugin's indexes go to."""
    folder = settings.index_cache_folder()
    if folder:
        return Path(folder)
    return Path(QgsApplication.qgisSettingsDirPath()) / "geobridge" / "indexes"


def index_folder_for_layer(
    layer: QgsRasterLayer,
    bundle: str,
    extent: str | None = None,
    chip_sizes: tuple[float, ...] = defaults.CHIP_SIZES,
    overlap: float = defaults.OVERLAP,
    root: Path | str | None = None,
) -> Path:
    """The index folder for `layer` indexed by `bundle` inside `extent` (the Processing
    EXTENT string the dock passes, or None for the whole layer)."""
    from .core.errors import UserError
    from .core.service import IndexRequest, index_folder_for
    from .processing.sources import SourceError, layer_source

    raster, source_id = layer.source(), f"{layer.providerType()}:{layer.source()}"
    try:
        src = layer_source(layer.providerType(), layer.source(), layer.crs().authid())
        if src.kind == "file":  # known by path, size and time: a rewritten file is another
            raster, source_id = src.source, None
    except SourceError:
        pass  # Processing says why; the folder name only has to be stable
    request: Any = IndexRequest(bundle, raster, "", region=extent or None,
                                chip_sizes=tuple(chip_sizes), overlap=overlap)  # fmt: skip
    try:
        return index_folder_for(request, root or index_root(), layer.name(), source_id)
    except UserError:  # an unreadable bundle: Processing reports it when it starts
        return Path(root or index_root()) / f"{_stem(layer.name())}-unknown-model"


def _stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "index"
