"""The dock's background job, one at a time: locating (a `tasks.LocateTask`) or building an
index (the Processing algorithm in a `QgsProcessingAlgRunnerTask`, the same code path as
Processing > GeoBridge > Build reference index). Start, cancel, finish, and stop on unload.

The job reports through signals on the main thread; the dock only updates widgets from them.
"""

from __future__ import annotations

import contextlib
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..core.service import LocateRequest
from ..tasks import LocateTask
from .errors import user_message

BUILD_ALGORITHM = "geobridge:buildindex"

# Tasks this plugin started, with what they use, until QGIS says they ended. The task manager
# owns the C++ task but not its Python wrapper (a Python task's run() lives there) nor a
# Processing task's context and feedback; a task may also outlive the dock that started it
# (the plugin unloading mid-build), so they are held here, not on the dock.
_RUNNING: set[tuple[Any, ...]] = set()


def run_task(task: QgsTask, *keep: Any) -> QgsTask:
    """Hand `task` to QGIS's task manager, holding it and `keep` until it ends."""
    entry = (task, *keep)
    _RUNNING.add(entry)
    task.taskCompleted.connect(lambda: _RUNNING.discard(entry))
    task.taskTerminated.connect(lambda: _RUNNING.discard(entry))
    QgsApplication.taskManager().addTask(task)
    return task


class _BuildFeedback(QgsProcessingFeedback):
    """Keeps the errors the algorithm reports: the last one tells the user why it failed."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:
        self.errors.append(error)
        super().reportError(error, fatalError)


class Jobs(QObject):
    """`busy` while a job runs; `task` is it. Signals: `progress(percent)`,
    `located(LocateOutcome)`, `indexed(index folder)`, `failed(message)` (a bug's traceback is
    in the QGIS log), `cancelled(message)`, `busy_changed(busy)`."""

    progress = pyqtSignal(int)
    located = pyqtSignal(object)
    indexed = pyqtSignal(str)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.task: QgsTask | None = None
        self._feedback: _BuildFeedback | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None

    # ------------------------------------------------------------ start

    def locate(self, request: LocateRequest) -> LocateTask | None:
        """Start locating; None when a job already runs. The dock adds the result layers
        itself (named and grouped per run), so the task adds none."""
        if self.busy:
            return None
        task = LocateTask(request, add_layers=False)
        task.progressChanged.connect(self._progress)
        task.succeeded.connect(self._located)
        task.failed.connect(self._locate_failed)
        self._start(task)
        return task

    def build_index(self, parameters: dict[str, Any]) -> QgsProcessingAlgRunnerTask | None:
        """Start the build algorithm with `parameters`; None when a job already runs."""
        if self.busy:
            return None
        registry = QgsApplication.processingRegistry()
        algorithm = registry.createAlgorithmById(BUILD_ALGORITHM)
        if algorithm is None:
            self.failed.emit("the GeoBridge Processing provider is not loaded")
            return None
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = _BuildFeedback()
        feedback.progressChanged.connect(self._progress)
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        task.executed.connect(self._built)
        self._feedback = feedback
        self._start(task, context, feedback)
        return task

    def _start(self, task: QgsTask, *keep: Any) -> None:
        self.task = task
        self.busy_changed.emit(True)
        self.progress.emit(0)
        run_task(task, *keep)

    # ------------------------------------------------------------ cancel and finish

    def cancel(self) -> None:
        """Ask the running job to stop; it reports `cancelled` when it has."""
        if self.task is None:
            return
        if self._feedback is not None:
            self._feedback.cancel()
        with contextlib.suppress(RuntimeError):  # already finished and deleted by QGIS
            self.task.cancel()

    def _progress(self, value: float) -> None:
        self.progress.emit(int(value))

    def _finish(self) -> None:
        self.task = None
        self._feedback = None
        self.busy_changed.emit(False)

    def _located(self, outcome: Any) -> None:
        self._finish()
        self.progress.emit(100)
        self.located.emit(outcome)

    def _locate_failed(self, error: str) -> None:
        task = self.task
        self._finish()
        self.progress.emit(0)
        if task is not None and task.cancelled_by_user:
            self.cancelled.emit("Cancelled.")
            return
        exception = task.exception if task is not None else None
        self.failed.emit(user_message(exception) if exception is not None else error)

    def _built(self, ok: bool, results: dict) -> None:
        feedback = self._feedback
        self._finish()
        if ok and results.get("OUTPUT"):
            self.progress.emit(100)
            self.indexed.emit(str(results["OUTPUT"]))
            return
        self.progress.emit(0)
        if feedback is not None and feedback.isCanceled():
            self.cancelled.emit("Cancelled; building again with the same output resumes.")
            return
        why = feedback.errors[-1].strip().splitlines()[-1] if feedback and feedback.errors else ""
        self.failed.emit(
            f"Index build failed: {why}" if why else "Index build failed: see the Processing log."
        )

    # ------------------------------------------------------------ unload

    def shutdown(self) -> None:
        """Cancel the running job and stop listening to it (the plugin is unloading). Nothing
        of the job reaches the project afterwards: the locate task adds no layers itself and
        the build's layers are never loaded; the task ends on its own thread shortly."""
        task, feedback = self.task, self._feedback
        self.task = self._feedback = None
        if task is None:
            return
        if feedback is not None:
            feedback.cancel()
            with contextlib.suppress(TypeError):
                feedback.progressChanged.disconnect(self._progress)
        # A LocateTask reports through `succeeded`/`failed`; a QgsProcessingAlgRunnerTask
        # has no such signals, only `executed`.
        names = (
            ("succeeded", "failed", "progressChanged")
            if isinstance(task, LocateTask)
            else ("executed",)
        )
        with contextlib.suppress(RuntimeError):  # RuntimeError: QGIS deleted the ended task
            for name in names:
                with contextlib.suppress(TypeError):  # not connected
                    getattr(task, name).disconnect()
            task.cancel()
