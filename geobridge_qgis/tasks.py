"""QgsTask wrappers around the engine's service (`core.service`): threading, progress and
cancel, nothing else. The Processing algorithms call the same service through `engine_call`.

The engine is imported inside the functions: loading the plugin must not load onnxruntime,
FAISS or GDAL's Python bindings (QGIS starts with every plugin loaded).
"""

from __future__ import annotations

import concurrent.futures
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

# Bound now, not when an error arrives: see core.errors.
from .core.errors import Cancelled, UserError

T = TypeVar("T")

# Engine work runs on threads this plugin owns, never directly on QGIS's pooled task and
# Processing threads. pyproj 3.7.0-3.7.2 keeps each thread's PROJ context in OS-thread storage
# but frees it with the Python thread state (pyproj issues #1509, #1622); a pooled Qt thread's
# Python state ends after every call, so the next task on that thread crashed in
# proj_create. A Python thread of our own keeps its state, and so its PROJ context, for as long
# as it lives, without reaching into pyproj's internals or any other process-wide state.
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
ENGINE_THREADS = 2  # an index build and a locate may run side by side


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                ENGINE_THREADS, thread_name_prefix="geobridge-engine"
            )
        return _POOL


def engine_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` on one of the plugin's engine threads and wait for it; exceptions come back as
    raised. On the main thread (a script's `processing.run`), whose Python state lives as long
    as the process, `fn` runs in place so that its signals stay direct."""
    if threading.current_thread() is threading.main_thread():
        return fn(*args, **kwargs)
    return _pool().submit(fn, *args, **kwargs).result()


def shutdown() -> None:
    """Stop the engine threads (after their current work) and drop the cached sessions; the
    plugin calls this when it unloads."""
    global _POOL
    from .core.service import clear_encoders

    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    clear_encoders()


def encoders_for(bundle: Any, providers: Sequence[str] | None = None) -> Any:
    """The shared encoders for `bundle`, with the analyst's provider and batch-size settings."""
    from . import settings
    from .core.service import encoders_for as shared

    return shared(bundle, list(providers or settings.providers()), settings.batch_size())


def with_settings(request: Any) -> Any:
    """A service request with the analyst's providers and batch size where it names none."""
    from . import settings

    if not request.providers:
        request.providers = settings.providers()
    request.batch_size = settings.batch_size()
    return request


def describe_error(e: BaseException) -> tuple[str, bool]:
    """(message for the user, whether the user cancelled): a UserError is its one line, a
    cancellation says so, a missing dependency names it, anything else is a bug and keeps
    its traceback for the log."""
    if isinstance(e, ImportError):
        return f"a dependency is missing: {e}", False
    if isinstance(e, Cancelled):
        return f"cancelled: {e}", True
    if isinstance(e, UserError):
        return str(e), False
    return "".join(traceback.format_exception(e)), False


class EngineTask(QgsTask):
    """One task base for every engine job: run() catches everything (an exception escaping a
    QgsTask is lost) and touches no widget or project; finished() runs on the main thread and
    reports through the signals."""

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, description: str):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.result: Any = None
        self.error: str | None = None
        self.exception: BaseException | None = None  # what made run() fail, for the caller
        self.cancelled_by_user = False
        self.messages: list[str] = []

    def _work(self) -> Any:
        raise NotImplementedError

    def _progress(self, done: int, total: int, _rate: float) -> None:
        self.setProgress(100.0 * done / max(total, 1))

    def run(self) -> bool:
        try:
            self.result = engine_call(self._work)
            return True
        except Exception as e:  # anything escaping run() would be lost with the thread
            self.exception = e
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


class IndexTask(EngineTask):
    """Build an index in the background; `result` is a `service.IndexOutcome`."""

    def __init__(self, request: Any):
        super().__init__(f"GeoBridge: index {Path(str(request.raster)).name}")
        self.request = with_settings(request)

    def _work(self) -> Any:
        from .core import service

        return service.build_index(
            self.request, self._progress, self.isCanceled, self.messages.append
        )


class LocateTask(EngineTask):
    """Locate photos and/or a description in the background; `result` is a
    `service.LocateOutcome`.

    With `add_layers`, the run is kept in the project's results store (`layers.project_store`,
    copied there by the engine thread) and finished() (the main thread, where the project may
    be touched) adds its layers as a group of "GeoBridge results"; `layers` then holds them and
    `run` the store's record. A run that found nothing adds no layers.
    """

    def __init__(self, request: Any, add_layers: bool = True, keep: bool = True):
        label = Path(request.photos[0]).name if request.photos else "description"
        super().__init__(f"GeoBridge: locate {label}")
        self.request = with_settings(request)
        self.add_layers = add_layers
        self.layers: Any = None
        self.run: Any = None
        self.store: Path | None = None
        if keep:  # every run is kept, whoever adds its layers (the dock does it itself)
            from .layers import project_store

            self.store = project_store()  # read here: the project is the main thread's

    def _work(self) -> Any:
        from .core import service

        outcome = service.locate(
            self.request, self._progress, self.isCanceled, self.messages.append
        )
        self.messages.extend(service.summary_line(q) for q in outcome.queries)
        if self.store is not None and outcome.out is not None:
            if any(q.candidates for q in outcome.queries):
                from .core.store import import_run
                from .result_groups import query_label

                # The run's readable name: the photo(s), else the description's start.
                label = query_label(self.request.photos, self.request.text).rsplit(" ", 1)[0]
                self.run = import_run(self.store, outcome.out, label)
                outcome.store, outcome.run = self.store, self.run
            else:
                self.messages.append("no candidates: no layers added")
        return outcome

    def _on_success(self) -> None:
        if self.add_layers and self.run is not None:
            from .layers import add_run_layers

            self.layers = add_run_layers(self.store, self.run)


class PhotoInfoTask(EngineTask):
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
