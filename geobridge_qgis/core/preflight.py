"""Before a search runs: can it find anything at all?

A search region outside the index, or a photo whose GPS circle lies outside the search region,
leaves no chip to search. Run anyway, it answers "0 candidates" with no reason and adds empty
layers; the analyst is left to guess which of their own settings cancel each other out. So
`check` says which one, in one line (a `UserError`), before any photo is encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import tiling
from .errors import UserError
from .index import Index
from .priors import PriorOptions, priors_for


def region_chips(index: Index, region: tiling.Region | None) -> np.ndarray | None:
    """The chip ids a search region leaves (None: no region); a region that leaves none is
    a `UserError` saying whether it lies outside the index or only between its chips."""
    if region is None or region.geometry is None:
        return None
    ids = index.ids_in(region)
    if len(ids):
        return ids
    geom = tiling.transform_geometry(region.geometry, region.crs or index.crs, index.crs)
    xmin, xmax, ymin, ymax = geom.GetEnvelope()
    half = float(index.sizes.max()) / 2 if len(index.sizes) else 0.0
    inside = (
        len(index.cx)
        and xmax >= index.cx.min() - half
        and xmin <= index.cx.max() + half
        and ymax >= index.cy.min() - half
        and ymin <= index.cy.max() + half
    )
    if not inside:
        raise UserError(
            f"the search region lies outside the index {index.root.name}, which covers "
            f"{_extent_text(index)}: nothing to search; draw the region over the index's area "
            "or search without it"
        )
    raise UserError(
        "the search region holds no chip centre of the index (its chips are "
        f"{', '.join(f'{s:g}' for s in np.unique(index.sizes))} m): draw a larger region"
    )


def _extent_text(index: Index) -> str:
    west, south, east, north = (float(v) for v in index.manifest["grid"]["lonlat_bounds"])
    return f"lon {west:.5f} to {east:.5f}, lat {south:.5f} to {north:.5f}"


def check(
    index: Index,
    region: tiling.Region | None,
    queries: list[tuple[Path | None, Any, Any]],
    priors: PriorOptions,
) -> None:
    """Raise a one-line `UserError` when a query of (photo path, image, metadata) could find
    nothing: the region outside the index, or a photo's priors (its GPS circle, above all)
    outside the region. Priors that leave nothing in the whole index are not an error: the
    search drops them with a note and goes on."""
    allowed_region = region_chips(index, region)
    if allowed_region is None:
        return
    for path, image, meta in queries:
        if image is None or meta is None:
            continue
        size = (image.shape[1], image.shape[0])
        pri = priors_for(meta, size, priors)
        allowed = pri.allowed_ids(index.ids, index.cx, index.cy, index.sizes, index.crs)
        if allowed is None or np.intersect1d(allowed, allowed_region).size:
            continue
        name = Path(path).name if path else "the photo"
        gps_only = priors_for(meta, size, PriorOptions(True, False, False, priors.gps_radius_m))
        circle = gps_only.allowed_ids(index.ids, index.cx, index.cy, index.sizes, index.crs)
        if (
            "gps" in pri.used
            and circle is not None
            and not np.intersect1d(circle, allowed_region).size
        ):
            lon, lat = pri.centre_lonlat
            raise UserError(
                f"{name}: its GPS circle ({lat:.6f}, {lon:.6f}, radius {pri.radius_m:.0f} m) "
                "lies outside the search region, so nothing can be found; search without the "
                "region or without the GPS limit"
            )
        raise UserError(
            f"{name}: its metadata ({', '.join(pri.used)}) leaves no chip in the search region; "
            "search without the region or without those priors"
        )
