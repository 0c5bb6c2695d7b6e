"""The application service: the one way every front end drives the engine.

The command line, the QGIS tasks, the Processing algorithms, the dock, `make demo` and the
evaluation each turn their own input (flags, widgets, parameters) into a request dataclass and
call `build_index` or `locate` here; they add only their own threading, progress display and
cancel button. Nothing here imports QGIS, so the same code runs headless.

Callbacks: `progress(done, total, rate)` (rate in items per second, 0 when unknown),
`cancelled()` (polled between batches and queries) and `log(line)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import defaults
from .build_folder import index_folder_for, index_identity  # noqa: F401  (front ends' names)
from .errors import Cancelled, UserError

log_ = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]
CancelCheck = Callable[[], bool]
Log = Callable[[str], None]

# A region: a tiling.Region, (WKT, CRS as authid or WKT), a vector file, or a bbox string.
RegionSpec = Any


def _quiet(_line: str) -> None:
    pass


# ---------------------------------------------------------------- shared sessions

_ENCODERS: dict[tuple, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def encoders_for(
    bundle: Any,
    providers: Sequence[str] | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    precision: str = defaults.PRECISION,
) -> Any:
    """One `Encoders` per bundle, provider list and batch size for the whole process.

    Creating an onnxruntime session of a ViT-L tower takes seconds; an analyst locating photo
    after photo should pay that once. onnxruntime sessions are safe to run from several
    threads; the lock only keeps two callers from creating the same sessions twice.
    """
    from .encoders import Encoders

    names = defaults.provider_names(providers)
    key = (str(Path(bundle.root).resolve()), bundle.model_id, tuple(names or ()), batch_size,
           precision)  # fmt: skip
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = Encoders(bundle, names, batch_size=batch_size, precision=precision)
        return _ENCODERS[key]


def clear_encoders() -> None:
    """Drop the cached sessions (their memory), e.g. when the plugin unloads."""
    with _ENCODERS_LOCK:
        _ENCODERS.clear()


def resolve_region(region: RegionSpec, default_crs: Any = None) -> Any:
    """A `tiling.Region` (or None for everything) from any of the forms front ends hold."""
    from pyproj import CRS

    from .tiling import Region

    if region is None or isinstance(region, Region):
        return region
    if isinstance(region, tuple):
        resolved = Region.from_wkt(*region)
        if resolved.geometry is None:
            raise UserError("the search region is not a valid geometry")
        return resolved
    if isinstance(region, Path):
        return Region.from_file(region)
    if isinstance(region, str):
        if default_crs is not None and not isinstance(default_crs, CRS):
            default_crs = CRS.from_user_input(default_crs)
        return Region.from_bbox(region, default_crs)
    raise TypeError(f"unsupported region {region!r}")


# ---------------------------------------------------------------- index


@dataclass
class IndexRequest:
    """Embed a raster's chip grid into a reference index at `out`."""

    bundle: Path | str
    raster: str
    out: Path | str
    region: RegionSpec = None  # a bbox string is read in the raster's CRS
    chip_sizes: tuple[float, ...] = defaults.CHIP_SIZES
    overlap: float = defaults.OVERLAP
    tower: str = defaults.TOWER
    max_chips: int = defaults.MAX_CHIPS
    providers: Sequence[str] | str | None = None
    batch_size: int = defaults.BATCH_SIZE
    precision: str = defaults.PRECISION  # auto: the device's best (core.precision)
    exact_max_chips: int = defaults.EXACT_MAX_CHIPS  # an approximate (IVF,SQ8) index above
    flip: bool = defaults.FLIP  # False: no flip augmentation, twice as fast (queries follow)


@dataclass
class IndexOutcome:
    folder: Path
    count: int
    skipped: int
    device: str
    seconds: float


def build_index(
    request: IndexRequest,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    log: Log | None = None,
) -> IndexOutcome:
    """Build (or resume) an index. Raises `UserError` for the user's mistakes and
    `Cancelled` when `cancelled()` turned true (the work done so far stays in
    `<out>.partial`, and the same request resumes it).

    An empty folder at `out` counts as absent: Processing may create its temporary output
    folders before the algorithm runs, and an empty folder holds nothing to protect.
    """
    import json

    from . import index as engine_index
    from .bundle import Bundle
    from .tiling import open_raster

    log = log or _quiet
    t0 = time.perf_counter()
    out = Path(request.out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.parent.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(request.bundle)
    encoders = encoders_for(bundle, request.providers, request.batch_size, request.precision)
    region = request.region
    if isinstance(region, str):
        from pyproj import CRS

        region = resolve_region(region, CRS.from_wkt(open_raster(request.raster).GetProjection()))
    else:
        region = resolve_region(region)
    folder = engine_index.build_index(
        encoders,
        request.raster,
        out,
        region=region,
        chip_sizes=tuple(request.chip_sizes),
        overlap=request.overlap,
        tower=request.tower,
        max_chips=request.max_chips,
        flat_max=request.exact_max_chips,
        progress=progress,
        cancelled=cancelled,
        on_estimate=lambda e: log(f"plan: {e.line()} on {encoders.device}"),
        flip=request.flip,
    )
    manifest = json.loads((folder / "index.json").read_text())
    return IndexOutcome(
        folder,
        int(manifest["count"]),
        int(manifest.get("skipped", 0)),
        encoders.device,
        time.perf_counter() - t0,
    )


# ---------------------------------------------------------------- locate


@dataclass
class LocateRequest:
    """Locate each photo (fused with `text` when both are given), or `text` alone."""

    bundle: Path | str
    index: Path | str
    photos: Sequence[Path | str] = ()
    text: str | None = None
    view: str = defaults.VIEW
    text_weight: float = defaults.TEXT_WEIGHT
    top_k: int = defaults.TOP_K
    rotations: tuple[int, ...] = defaults.ROTATIONS
    region: RegionSpec = None  # a bbox string is read in the index's CRS
    rerank: bool = defaults.RERANK
    refine: bool = defaults.REFINE
    rerank_top: int = defaults.RERANK_TOP
    use_gps: bool = True
    use_altitude: bool = True
    use_heading: bool = True
    gps_radius_m: float | None = None  # None: the photo's EXIF accuracy, else the default
    out: Path | str | None = None  # results GeoPackage
    heatmap_tif: Path | str | None = None  # the first query's heat map as a GeoTIFF
    providers: Sequence[str] | str | None = None
    batch_size: int = defaults.BATCH_SIZE
    precision: str = defaults.PRECISION  # auto: the precision that built the index

    def query_options(self, region: Any = None) -> Any:
        from .locate import QueryOptions
        from .priors import PriorOptions

        return QueryOptions(
            top_k=self.top_k,
            rotations=tuple(self.rotations) or (0,),
            view=self.view,
            text_weight=self.text_weight,
            region=region,
            heatmap=bool(self.out or self.heatmap_tif),
            rerank=self.rerank,
            refine=self.refine,
            rerank_top=self.rerank_top,
            priors=PriorOptions(
                self.use_gps, self.use_altitude, self.use_heading, self.gps_radius_m
            ),
        )


@dataclass
class QueryOutcome:
    """One query's answer, as plain Python data a GUI thread can read safely."""

    query_id: int
    kind: str  # "photo", "text" or "photo+text"
    label: str
    photo: Path | None
    photo_lon: float | None  # the photo's own GPS, when its metadata has one
    photo_lat: float | None
    candidates: list[Any]  # core.locate.Candidate
    priors_used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prior_circle: tuple[float, float, float] | None = None  # lon, lat, radius m
    result: Any = None  # core.locate.LocateResult (heat map, chips, timings)


@dataclass
class LocateOutcome:
    out: Path | None
    queries: list[QueryOutcome] = field(default_factory=list)
    device: str = ""
    model_name: str = ""
    index_id: str = ""
    crs_wkt: str = ""  # the index's grid CRS, in which candidates' footprints are given
    seconds: float = 0.0
    store: Path | None = None  # the results store a front end kept this run in (core.store)
    run: Any = None  # and the store's record of it

    @property
    def query_ids(self) -> list[int]:
        return [q.query_id for q in self.queries]


class LocateSession:
    """A bundle, an index, their encoders and the imagery matcher, opened once for many
    queries. `locate` below is one session's run; the demo and the evaluation use a session
    directly to ask the same photo several ways."""

    def __init__(
        self,
        bundle: Path | str | Any,
        index: Path | str | Any,
        providers: Sequence[str] | str | None = None,
        batch_size: int = defaults.BATCH_SIZE,
        log: Log | None = None,
        precision: str = defaults.PRECISION,
    ):
        from .bundle import Bundle
        from .index import Index

        self.log = log or _quiet
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.index = index if isinstance(index, Index) else Index.open(index, self.bundle)
        if precision == defaults.PRECISION:
            # Queries in the precision that embedded the gallery: the cosines then compare
            # like with like, whatever this device would pick for itself.
            precision = self.index.manifest.get("precision", defaults.PRECISION)
        self.encoders = encoders_for(self.bundle, providers, batch_size, precision)
        self._matcher: Any = None
        self._matcher_tried = False
        self.items: list[tuple] = []  # (QueryRecord, LocateResult, CRS) for write_results

    @property
    def matcher(self) -> Any:
        """The imagery matcher for re-ranking, or None (said once) when the index's raster
        cannot be read."""
        if not self._matcher_tried:
            from .locate import matcher_for

            self._matcher_tried = True
            self._matcher, why = matcher_for(self.index)
            if why:
                self.log(why)
        return self._matcher

    def close(self) -> None:
        """Release the matcher's raster (GDAL datasets must be gone before GDAL shuts down)."""
        self._matcher = None
        self._matcher_tried = False

    def embed_text(self, text: str | None) -> np.ndarray | None:
        return self.encoders.encode_text([text]) if text else None

    def query(
        self,
        options: Any,
        photo: Path | None = None,
        image: np.ndarray | None = None,
        meta: Any = None,
        text: str | None = None,
        text_emb: np.ndarray | None = None,
        sha256: bool = True,
    ) -> QueryOutcome:
        """One query with `options` (core.locate.QueryOptions); `image`/`meta` are read from
        `photo` when not given. The record is kept for `write`."""
        from .bundle import sha256_file
        from .locate import locate_query
        from .photo import read_photo_with_meta
        from .results import QueryRecord

        if photo is not None and image is None:
            image, meta = read_photo_with_meta(photo)
        if text and text_emb is None:
            text_emb = self.embed_text(text)
        t0 = time.perf_counter()
        matcher = self.matcher if image is not None and options.rerank else None
        result = locate_query(self.index, self.encoders, image, meta, text_emb, options, matcher)
        qid = len(self.items) + 1
        kind = "+".join(k for k, v in (("photo", image is not None), ("text", text)) if v)
        record = QueryRecord(
            query_id=qid,
            kind=kind,
            model_id=self.bundle.model_id,
            index_id=self.index.index_id,
            file=str(photo) if photo else None,
            sha256=sha256_file(Path(photo), cache=False) if photo and sha256 else None,
            text=text,
            device=self.encoders.device,
            seconds=time.perf_counter() - t0,
            parameters=options.as_dict(),
            priors_used=result.priors_used,
            notes=result.notes,
        )
        self.items.append((record, result, self.index.crs))
        label = Path(photo).name if photo else f'"{(text or "")[:40]}"'
        return QueryOutcome(
            qid,
            kind,
            label,
            Path(photo) if photo else None,
            getattr(meta, "lon", None) if meta is not None else None,
            getattr(meta, "lat", None) if meta is not None else None,
            result.candidates,
            list(result.priors_used),
            list(result.notes),
            result.prior_circle,
            result,
        )

    def write(self, out: Path | str) -> Path:
        """Every query so far into one results GeoPackage (complete or absent)."""
        from .results import write_results

        return write_results(out, self.items)


def summary_line(q: QueryOutcome) -> str:
    """The one line a front end shows for a query's best answer."""
    if not q.candidates:
        return f"{q.label}: no candidate (the region or priors leave no chip)"
    best = q.candidates[0]
    extra = ""
    if best.method == "refined":
        extra = (
            f", +/- {best.centre_sigma_m:.1f} m, heading {best.heading_deg:.0f} deg, "
            f"{best.match.summary()}"
        )
    return (
        f"{q.label}: top-1 {best.lon:.6f}, {best.lat:.6f} score {best.score:.3f} "
        f"p {best.probability:.2f} ({best.method}{extra}; {len(q.candidates)} candidates)"
    )


def locate(
    request: LocateRequest,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    log: Log | None = None,
) -> LocateOutcome:
    """Run every query of `request`; write the GeoPackage (and heat map) it names.

    Every photo is read and every output checked before any encoding: a bad tenth photo must
    not cost nine queries. Raises `UserError` for the user's mistakes and `Cancelled`
    when `cancelled()` turned true between queries.
    """
    from . import preflight
    from .photo import read_photo_with_meta
    from .results import check_writable, write_heatmap_tif

    log = log or _quiet
    text = (request.text or "").strip() or None
    photos = [Path(p) for p in request.photos]
    if not photos and not text:
        raise UserError("give a photo, a description or both")
    if request.top_k < 1:
        raise UserError(f"top-k must be at least 1, got {request.top_k}")
    if request.view not in defaults.VIEWS:
        raise UserError(f"view must be one of {', '.join(defaults.VIEWS)}, got {request.view}")
    for path in (request.out, request.heatmap_tif):
        if path:
            check_writable(Path(path))
    t_start = time.perf_counter()
    session = LocateSession(
        request.bundle, request.index, request.providers, request.batch_size, log,
        request.precision,
    )  # fmt: skip
    region = resolve_region(request.region, session.index.crs)
    loaded = [(p, *read_photo_with_meta(p)) for p in photos]
    options = request.query_options(region)
    # A search that can find nothing is said before any encoding, and writes nothing.
    preflight.check(session.index, region, loaded, options.priors)
    log(
        f"model {session.bundle.name}, index {session.index.index_id} "
        f"({session.index.faiss_index.ntotal:,} chips), encoders on {session.encoders.device} "
        f"({session.encoders.precision})"
    )
    text_emb = session.embed_text(text)
    outcome = LocateOutcome(
        Path(request.out) if request.out else None,
        device=session.encoders.device,
        model_name=session.bundle.name,
        index_id=session.index.index_id,
        crs_wkt=session.index.crs.to_wkt(),
    )
    queries = loaded or [(None, None, None)]
    try:
        for n, (path, image, meta) in enumerate(queries, start=1):
            if cancelled and cancelled():
                raise Cancelled(f"cancelled after {n - 1} of {len(queries)} queries")
            q = session.query(options, path, image, meta, text, text_emb)
            outcome.queries.append(q)
            for note in q.notes:
                log(f"{q.label}: {note}")
            if progress:
                progress(n, len(queries) + 1, 0.0)
        if request.out:
            session.write(request.out)
        if request.heatmap_tif and outcome.queries[0].result.heatmap is not None:
            write_heatmap_tif(request.heatmap_tif, outcome.queries[0].result.heatmap)
    finally:
        session.close()
    if progress:
        progress(len(queries) + 1, len(queries) + 1, 0.0)
    outcome.seconds = time.perf_counter() - t_start
    return outcome


def parse_photo_list(text: str | None) -> list[Path]:
    """Photo paths separated by ';' (or new lines), blanks ignored."""
    if not text:
        return []
    parts = [p.strip().strip('"') for p in text.replace("\n", ";").split(";")]
    return [Path(p) for p in parts if p]
