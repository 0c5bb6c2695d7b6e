"""The synthetic world: a procedural landscape (`world/`), rendered as a satellite image and as
drone photos (`render/`), described in words (`describe.py`) and written to a folder with its
truth (`synth.py`, read back by `files.py`). The demo model is trained and evaluated on it.

Needs OpenCV, shapely, pyproj, Pillow and GDAL; of this project it imports only the engine
(`geobridge_qgis.core`), and the engine never imports it.
"""

__version__ = "0.1.0"  # written into the photos' EXIF (Software)
