"""GDAL's exception mode, switched on only around the engine's own GDAL calls.

GDAL's Python bindings keep one process-wide switch per module (gdal, ogr, osr): raise
RuntimeError on a failure, or return None and print. QGIS and every other plugin share the
process and rely on the switch as they (or nobody) left it, so the engine never sets it for
good: `gdal_exceptions()` turns exceptions on for a block and puts the previous modes back when
the last nested or concurrent block ends. GDAL 3.7 has `gdal.ExceptionMgr` for this, but
Debian 12 ships GDAL 3.6, which has only the three Get/Use/DontUse functions used here. In 3.6
the switch is one for the whole process, so while a block runs in a worker thread other threads
see exceptions on too: blocks wrap the engine's own calls and nothing longer.

Inside a block, GDAL's warnings (e.g. libtiff's complaints about a harmless malformed tag) go
to this module's logger instead of straight to stderr, where they would bury the one line a
refused raster is reported with; failures are raised as exceptions and so are not logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from osgeo import gdal, ogr, osr

log = logging.getLogger(__name__)

_MODULES = (gdal, ogr, osr)
_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] = ()


def _log_gdal(err_class: int, err_no: int, message: str) -> None:
    if err_class == gdal.CE_Warning:
        log.info("GDAL: %s", message.strip())
    elif err_class == gdal.CE_Debug:
        log.debug("GDAL: %s", message.strip())


@contextmanager
def gdal_exceptions() -> Iterator[None]:
    """Run a block (or, as a decorator, a function) with GDAL, OGR and OSR raising exceptions.

    Re-entrant and safe across the engine's threads: the modes found when the outermost block
    started are restored when the last one ends. The error handler is per thread in GDAL, so
    each block pushes and pops its own.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = tuple(m.GetUseExceptions() for m in _MODULES)
            for m, was in zip(_MODULES, _saved, strict=True):
                if not was:
                    m.UseExceptions()
        _depth += 1
    gdal.PushErrorHandler(_log_gdal)
    try:
        yield
    finally:
        gdal.PopErrorHandler()
        with _lock:
            _depth -= 1
            if _depth == 0:
                # GDAL 3.6 chains the three modules' handlers and undoes them only in reverse.
                for m, was in reversed(list(zip(_MODULES, _saved, strict=True))):
                    if not was:
                        try:
                            m.DontUseExceptions()
                        except RuntimeError as e:  # someone else changed the chain meanwhile
                            log.debug("cannot restore %s's error mode: %s", m.__name__, e)
