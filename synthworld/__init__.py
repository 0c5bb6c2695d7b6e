"""The synthetic world: a procedural landscape (`world/`), rendered as a satellite image and as
drone photos (`render/`), described in words (`describe.py`) and written to a folder with its
truth (`synth.py`, read back by `files.py`). The demo model is trained and evaluated on it.

Needs OpenCV, shapely, pyproj, Pillow and GDAL; of this project it imports only the engine
(`geobridge_qgis.core`), and the engine never imports it.
"""

from geobridge_qgis.core.version import __version__  # noqa: F401  (EXIF Software tag)
