"""How the plugin's widgets tell the user what went wrong.

A `UserError` (a file, a setting, a region the user can fix) is shown as its own one-line
message. Anything else is a bug: its traceback goes to the "GeoBridge" tab of QGIS's log panel
and the user is told so in one line, never shown a traceback.
"""

from __future__ import annotations

import traceback

from qgis.core import Qgis, QgsMessageLog

LOG_TAG = "GeoBridge"


def log(text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    QgsMessageLog.logMessage(text, LOG_TAG, level)


def _traceback(error: BaseException) -> str:
    # The three-argument form: QGIS 3.22 may run Python 3.9.
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def user_message(error: BaseException) -> str:
    """The line to show for `error` (logging a bug's traceback on the way)."""
    from ..core.errors import UserError

    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, ImportError):
        # Not a bug in the plugin: a package it needs is absent or broken in this QGIS; the
        # dock's Locate offers to install it.
        log(_traceback(error), Qgis.MessageLevel.Warning)
        return f"a Python package GeoBridge needs cannot be imported: {error}"
    log(_traceback(error), Qgis.MessageLevel.Critical)
    first = (str(error).strip().splitlines() or [""])[0]
    what = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return (
        f"GeoBridge hit an unexpected error ({what}); the details are in the "
        f"{LOG_TAG} tab of the log panel"
    )
