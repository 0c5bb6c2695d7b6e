"""GeoBridge for QGIS.

QGIS calls `classFactory`; nothing here imports QGIS or any heavy dependency at import time, so
`geobridge_qgis.core` also works headless (`python -m geobridge_qgis ...`).
"""

from .core.version import __version__  # noqa: F401  (the one version)


def classFactory(iface):
    from .plugin import GeoBridgePlugin

    return GeoBridgePlugin(iface)
