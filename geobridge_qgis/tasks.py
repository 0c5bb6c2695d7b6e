"""The engine, called from QGIS: plain functions plus the QgsTask wrappers the dock runs.

`run_index` and `run_locate` are what both the Processing algorithms and the tasks call, so the
plugin drives `geobridge_qgis.core` one way only (the same way as the command line). They take
callbacks instead of QGIS objects, touch no widget and no project, and may run in any thread.

The engine is imported inside the functions: loading the plugin must not load onnxruntime,
FAISS or GDAL's Python bindings (QGIS starts with every plugin loaded).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

Log = Callable[[str], None]
Progress = Callable[[float], None]  # percent, 0..100
CancelCheck = Callable[[], bool]

_ENCODERS: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_ENCODERS_LOCK = threading.Lock()


def encoders_for(bundle: Any, providers: Sequence[str] | None = None) -> Any:
    """One `Encoders` per bundle and provider list for the whole QGIS session.

    Creating an onnxruntime session of a ViT-L tower takes seconds; an analyst locating photo
    after photo should pay that once. onnxruntime sessions are safe to run from several
    threads; the lock only keeps two tasks from creating the same sessions twice.
    """
    from . import settings
    from .core.encoders import Encoders

    # Without an explicit list, the analyst's preferences (QgsSettings geobridge/...) decide.
    providers = list(providers or settings.providers()) or None
    batch = settings.batch_size()
    key = (str(Path(bundle.root).resolve()), bundle.model_id, tuple(providers or ()), batch)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = Encoders(bundle, providers, batch_size=batch)
        return _ENCODERS[key]


def clear_encoders() -> None:
    """Drop the cached sessions (their memory), e.g. when the plugin unloads."""
    with _ENCODERS_LOCK:
        _ENCODERS.clear()


@contextlib.contextmanager
def pyproj_thread_guard() -> Iterator[None]:
    """Wrap engine work in a QGIS worker thread (QgsTask.run, processAlgorithm).

    pyproj 3.7.0 to 3.7.2 keeps each thread's PROJ context in OS-thread storage but frees it
    with the Python thread state (pyproj issues #1509, #1622). QGIS runs tasks and Processing
    algorithms on pooled Qt threads whose Python thread state ends with each call, so the next
    task on the same thread got a freed context and QGIS crashed in proj_create. Holding the
    context's owner for as long as the OS thread may be reused keeps it valid (one PROJ
    context per pool thread, the same as pyproj intends). The owners are kept on pyproj's own
    module, which outlives this plugin's modules when QGIS unloads or reloads the plugin.
    """
    try:
        yield
    finally:
        # The main thread's state lives as long as Python: nothing to keep there.
        if threading.current_thread() is not threading.main_thread():
            _keep_pyproj_context()


def _keep_pyproj_context() -> None:
    try:
        from pyproj import _context
    except ImportError:  # a pyproj without per-thread contexts
        return
    manager = getattr(_context, "get_context_manager", lambda: None)()
    if manager is not None:
        kept = _context.__dict__.setdefault("_kept_by_geobridge", {})
        kept[threading.get_native_id()] = manager


# ---------------------------------------------------------------- index


def run_index(
    bundle_dir: Path | str,
    raster: str,
    out: Path | str,
    region: Any = None,
    chip_sizes: tuple[float, ...] = (100.0, 150.0),
    overlap: float = 0.5,
    max_chips: int = 250_000,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    log: Log | None = None,
) -> Path:
    """Build an index (see `core.index.build_index`); returns its folder.

    An empty folder at `out` counts as absent: Processing may create its temporary output
    folders before the algorithm runs, and an empty folder holds nothing to protect.
    Raises `core.errors.UserError` for the user's mistakes and `core.index.Cancelled` when
    `cancelled()` turned true (the work done so far stays in `<out>.partial` for a resume).
    """
    from .core.bundle import Bundle
    from .core.index import build_index

    log = log or (lambda _msg: None)
    out = Path(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(bundle_dir)
    encoders = encoders_for(bundle)
    log(f"model {bundle.name} ({bundle.model_id}), encoders on {encoders.device}")

    def on_progress(done: int, total: int, rate: float) -> None:
        if progress:
            progress(100.0 * done / max(total, 1))

    return build_index(
        encoders,
        raster,
        out,
        region=region,
        chip_sizes=tuple(chip_sizes),
        overlap=overlap,
        max_chips=max_chips,
        progress=on_progress,
        cancelled=cancelled,
        on_estimate=lambda e: log(f"plan: {e.line()} on {encoders.device}"),
    )


# ---------------------------------------------------------------- locate


@dataclass
class QueryOutcome:
    """One query's answer, as plain Python data the main thread can read safely."""

    query_id: int
    kind: str
    label: str
    photo: Path | None
    photo_lon: float | None  # the photo's own GPS, when its EXIF has one
    photo_lat: float | None
    candidates: list[Any]  # core.locate.Candidate
    priors_used: list[str] = field(default_factory=list)


@dataclass
class LocateOutcome:
    out: Path
    queries: list[QueryOutcome] = field(default_factory=list)
    device: str = ""
    model_name: str = ""
    index_id: str = ""
    crs_wkt: str = ""  # the index's grid CRS, in which candidates' footprints are given
    seconds: float = 0.0

    @property
    def query_ids(self) -> list[int]:
        return [q.query_id for q in self.queries]


def parse_photo_list(text: str | None) -> list[Path]:
    """Photo paths separated by ';' (or new lines), blanks ignored."""
    if not text:
        return []
    parts = [p.strip().strip('"') for p in text.replace("\n", ";").split(";")]
    return [Path(p) for p in parts if p]


def run_locate(
    bundle_dir: Path | str,
    index_dir: Path | str,
    out: Path | str,
    photos: Sequence[Path | str] = (),
    text: str | None = None,
    top_k: int = 10,
    rotate: bool = True,
    text_weight: float = 0.5,
    view: str = "drone",
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    log: Log | None = None,
    region: Any = None,
    rerank: bool = True,
    refine: bool = True,
    use_gps: bool = True,
    use_altitude: bool = True,
    use_heading: bool = True,
    gps_radius_m: float | None = None,
) -> LocateOutcome:
    """Locate each photo (fused with `text` when both are given), or `text` alone, and write
    all queries to the GeoPackage `out` with `core.results.write_results`.

    `region` limits the search: a `core.tiling.Region`, or (WKT, CRS) with the CRS as an
    authid or WKT (what `gui.maptools.search_region` gives); None searches the whole index.
    `rerank`/`refine` switch the geometric steps (core.refine), `use_*` the photo's metadata
    priors (core.priors); `gps_radius_m` None takes the EXIF accuracy, else 15 m."""
    from .core import locate as L
    from .core.bundle import Bundle, sha256_file
    from .core.errors import UserError
    from .core.index import Cancelled, Index
    from .core.photo import read_photo_with_meta
    from .core.priors import PriorOptions
    from .core.results import QueryRecord, check_writable, write_results
    from .core.tiling import Region

    log = log or (lambda _msg: None)
    text = (text or "").strip() or None
    photos = [Path(p) for p in photos]
    if not photos and not text:
        raise UserError("give a photo, a description or both")
    if top_k < 1:
        raise UserError(f"top-k must be at least 1, got {top_k}")
    if region is not None and not isinstance(region, Region):
        region = Region.from_wkt(*region)
        if region.geometry is None:
            raise UserError("the search region is not a valid geometry")
    out = Path(out)
    check_writable(out)
    t_start = time.perf_counter()
    bundle = Bundle.load(bundle_dir)
    index = Index.open(index_dir, bundle)
    # Every photo is read before any encoding: a bad tenth photo must not cost nine queries.
    loaded = [(p, *read_photo_with_meta(p)) for p in photos]
    encoders = encoders_for(bundle)
    log(
        f"model {bundle.name}, index {index.index_id} ({index.faiss_index.ntotal:,} chips), "
        f"encoders on {encoders.device}"
    )
    options = L.QueryOptions(
        top_k=top_k,
        rotations=L.DEFAULT_ROTATIONS if rotate else (0,),
        view=view,
        text_weight=text_weight,
        region=region,
        rerank=rerank,
        refine=refine,
        priors=PriorOptions(use_gps, use_altitude, use_heading, gps_radius_m),
    )
    matcher = None
    if loaded and rerank:
        matcher, why = L.matcher_for(index)
        if why:
            log(why)
    text_emb = encoders.encode_text([text]) if text else None
    queries = loaded or [(None, None, None)]
    outcome = LocateOutcome(
        out,
        device=encoders.device,
        model_name=bundle.name,
        index_id=index.index_id,
        crs_wkt=index.crs.to_wkt(),
    )
    items = []
    for qid, (path, img, meta) in enumerate(queries, start=1):
        if cancelled and cancelled():
            raise Cancelled(f"cancelled after {qid - 1} of {len(queries)} queries")
        t0 = time.perf_counter()
        result = L.locate_query(index, encoders, img, meta, text_emb, options, matcher)
        kind = "+".join(k for k, v in (("photo", path), ("text", text)) if v)
        record = QueryRecord(
            query_id=qid,
            kind=kind,
            model_id=bundle.model_id,
            index_id=index.index_id,
            file=str(path) if path else None,
            sha256=sha256_file(path, cache=False) if path else None,
            text=text,
            device=encoders.device,
            seconds=time.perf_counter() - t0,
            parameters=options.as_dict(),
            priors_used=result.priors_used,
            notes=result.notes,
        )
        items.append((record, result, index.crs))
        label = path.name if path else f'"{text[:40]}"'
        outcome.queries.append(
            QueryOutcome(
                qid,
                kind,
                label,
                path,
                meta.lon if meta else None,
                meta.lat if meta else None,
                result.candidates,
                result.priors_used,
            )
        )
        for note in result.notes:
            log(f"{label}: {note}")
        if result.candidates:
            best = result.candidates[0]
            log(
                f"{label}: top-1 {best.lon:.6f}, {best.lat:.6f} score {best.score:.3f} "
                f"p {best.probability:.2f} ({best.method})"
            )
        if progress:
            progress(100.0 * qid / (len(queries) + 1))
    write_results(out, items)
    if progress:
        progress(100.0)
    outcome.seconds = time.perf_counter() - t_start
    return outcome


# ---------------------------------------------------------------- tasks


def describe_error(e: Exception) -> tuple[str, bool]:
    """(message for the user, whether the user cancelled): a UserError is its one line, a
    cancellation says so, a missing dependency names it, anything else is a bug and keeps
    its traceback for the log."""
    if isinstance(e, ImportError):
        return f"a dependency is missing: {e}", False
    from .core.errors import UserError
    from .core.index import Cancelled

    if isinstance(e, Cancelled):
        return f"cancelled: {e}", True
    if isinstance(e, UserError):
        return str(e), False
    return "".join(traceback.format_exception(e)), False


class _EngineTask(QgsTask):
    """Common ground: run() catches everything (an exception escaping a QgsTask is lost),
    and finished() (main thread) reports through signals."""

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, description: str):
        super().__init__(description, QgsTask.CanCancel)
        self.result: Any = None
        self.error: str | None = None
        self.cancelled_by_user = False
        self.messages: list[str] = []

    def _work(self) -> Any:
        raise NotImplementedError

    def run(self) -> bool:
        try:
            with pyproj_thread_guard():
                self.result = self._work()
            return True
        except Exception as e:  # anything escaping run() would be lost with the thread
            self.error, self.cancelled_by_user = describe_error(e)
            return False

    def finished(self, result: bool) -> None:
        if result:
            self._on_success()
            self.succeeded.emit(self.result)
        else:
            if self.error is None:  # cancelled before run() started
                self.cancelled_by_user = True
                self.error = "cancelled"
            self.failed.emit(self.error)

    def _on_success(self) -> None:
        pass


class IndexTask(_EngineTask):
    """Build an index in the background; `result` is the index folder."""

    def __init__(
        self,
        bundle_dir: Path | str,
        raster: str,
        out: Path | str,
        region: Any = None,
        chip_sizes: tuple[float, ...] = (100.0, 150.0),
        overlap: float = 0.5,
        max_chips: int = 250_000,
    ):
        super().__init__(f"GeoBridge: index {Path(str(raster)).name}")
        self.args = dict(
            bundle_dir=bundle_dir,
            raster=raster,
            out=out,
            region=region,
            chip_sizes=chip_sizes,
            overlap=overlap,
            max_chips=max_chips,
        )

    def _work(self) -> Path:
        return run_index(
            **self.args,
            progress=self.setProgress,
            cancelled=self.isCanceled,
            log=self.messages.append,
        )


class LocateTask(_EngineTask):
    """Locate photos and/or a description in the background; `result` is a LocateOutcome.

    With `add_layers`, finished() (the main thread, where the project may be touched) adds
    the result layers to the project's "GeoBridge results" group; `layers` then holds them.
    """

    def __init__(
        self,
        bundle_dir: Path | str,
        index_dir: Path | str,
        out: Path | str,
        photos: Sequence[Path | str] = (),
        text: str | None = None,
        top_k: int = 10,
        rotate: bool = True,
        add_layers: bool = True,
        region: Any = None,
        **options: Any,
    ):
        """`options`: run_locate's switches (rerank, refine, use_gps, use_altitude,
        use_heading, gps_radius_m)."""
        label = Path(photos[0]).name if photos else "description"
        super().__init__(f"GeoBridge: locate {label}")
        self.args = dict(
            bundle_dir=bundle_dir,
            index_dir=index_dir,
            out=out,
            photos=list(photos),
            text=text,
            top_k=top_k,
            rotate=rotate,
            region=region,
            **options,
        )
        self.add_layers = add_layers
        self.layers: Any = None

    def _work(self) -> LocateOutcome:
        return run_locate(
            **self.args,
            progress=self.setProgress,
            cancelled=self.isCanceled,
            log=self.messages.append,
        )

    def _on_success(self) -> None:
        if self.add_layers:
            from .layers import add_result_layers

            outcome: LocateOutcome = self.result
            label = outcome.queries[0].label if len(outcome.queries) == 1 else outcome.out.stem
            self.layers = add_result_layers(outcome.out, label=label, query_ids=outcome.query_ids)


class PhotoInfoTask(_EngineTask):
    """Read a photo off the main thread (a 20 MP JPEG takes a while to decode): `result` is
    (thumbnail uint8 RGB array, PhotoMeta)."""

    def __init__(self, photo: Path | str, thumb_size: tuple[int, int] = (240, 180)):
        super().__init__(f"GeoBridge: read {Path(photo).name}")
        self.photo = Path(photo)
        self.thumb_size = thumb_size

    def _work(self) -> tuple[Any, Any]:
        import numpy as np
        from PIL import Image

        from .core.photo import read_photo_with_meta

        pixels, meta = read_photo_with_meta(self.photo)
        thumb = Image.fromarray(pixels)
        thumb.thumbnail(self.thumb_size)
        return np.ascontiguousarray(np.asarray(thumb)), meta


def start(task: QgsTask) -> QgsTask:
    """Hand a task to QGIS's task manager (it shows in the status bar and can be cancelled)."""
    QgsApplication.taskManager().addTask(task)
    return task
