"""GeoBridge for QGIS.

QGIS calls `classFactory`; nothing here imports QGIS or any heavy dependency at import time, so
`geobridge_qgis.core` also works headless (`python -m geobridge_qgis ...`).
"""

from pathlib import Path


def _version() -> str:
    """The one version number: metadata.txt's (beside this file in the plugin zip, at the
    repository root in a checkout)."""
    here = Path(__file__).resolve().parent
    for path in (here / "metadata.txt", here.parent / "metadata.txt"):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("version="):
                    return line.split("=", 1)[1].strip()
    return "0+unknown"


__version__ = _version()


def classFactory(iface):
    from .plugin import GeoBridgePlugin

    return GeoBridgePlugin(iface)
