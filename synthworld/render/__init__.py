"""Rendering a `World`: north-up orthos (the satellite image, `ortho.py`) and pinhole drone
photos (`drone.py`, with buildings and trees standing in 3D from `solids.py`), in a `Style`
(`style.py`). The camera is the engine's (`geobridge_qgis.core.camera`); `cameras.py` draws
random ones over a world."""

from geobridge_qgis.core.camera import Camera

from .cameras import random_camera
from .drone import Texture, render_drone, render_texture
from .ortho import render_ortho
from .style import Style

__all__ = [
    "Camera",
    "Style",
    "Texture",
    "random_camera",
    "render_drone",
    "render_ortho",
    "render_texture",
]
