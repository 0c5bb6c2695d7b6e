"""What every GeoBridge Processing algorithm shares: its provider group, icon, dependency check,
the model bundle and index parameters (defaulting to what the dock last used), and the one way
to run the engine's service from processAlgorithm.

Each algorithm reads the layers it needs in prepareAlgorithm (QGIS's main thread, where map
layers live) and does the heavy work in processAlgorithm, which QGIS runs in a background
thread: so nothing here touches a widget or the project there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
)
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..core.errors import Cancelled, UserError  # bound now: see core.errors
from ..paths import ICON


def advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """Show `param` under the dialog's "Advanced parameters"."""
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    return param


def bundle_parameter(name: str = "BUNDLE") -> QgsProcessingParameterFile:
    """The model bundle folder; its default is the dock's (the last one used), so that the
    dock and Processing agree, and empty when there is none (never a path that may not
    exist, such as the source checkout's demo bundle in an installed zip)."""
    return QgsProcessingParameterFile(
        name,
        "Model bundle folder",
        behavior=QgsProcessingParameterFile.Behavior.Folder,
        defaultValue=settings.default_bundle() or None,
    )


def index_parameter(name: str = "INDEX") -> QgsProcessingParameterFile:
    """An index folder, defaulting to the dock's last one while it exists."""
    return QgsProcessingParameterFile(
        name,
        "Index folder (made by Build reference index)",
        behavior=QgsProcessingParameterFile.Behavior.Folder,
        defaultValue=settings.default_index() or None,
    )


def progress_to(feedback: QgsProcessingFeedback) -> Callable[[int, int, float], None]:
    """The service's progress callback, shown on Processing's progress bar."""
    return lambda done, total, _rate: feedback.setProgress(100.0 * done / max(total, 1))


class GeoBridgeAlgorithm(QgsProcessingAlgorithm):
    """The base of the GeoBridge algorithms: `_process` does the work once the engine's
    packages are known to import."""

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def processAlgorithm(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        from ..deps import require_for_processing

        require_for_processing()  # no dialog here: says what is missing and where to install
        return self._process(parameters, context, feedback)

    def _process(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def run_service(
        function: Callable[..., Any],
        request: Any,
        feedback: QgsProcessingFeedback,
        when_cancelled: str = "",
    ) -> Any:
        """Run a `core.service` function on the plugin's engine threads with the analyst's
        provider and batch-size settings. A user's mistake and a cancel become a
        QgsProcessingException (one line in the log, no traceback); anything else is a bug
        and keeps its traceback."""
        from ..tasks import engine_call, with_settings

        try:
            return engine_call(
                function,
                with_settings(request),
                progress_to(feedback),
                feedback.isCanceled,
                feedback.pushInfo,
            )
        except Cancelled as e:
            raise QgsProcessingException(f"{e}{when_cancelled}") from None
        except UserError as e:
            raise QgsProcessingException(str(e)) from None
