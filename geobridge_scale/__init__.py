"""GeoBridge at country scale: the reference index built on a Ray cluster (optional).

Installed with `make setup SCALE=1` (requirements-scale.txt). The plugin, the engine's local
path and the demo never import this package; `python -m geobridge_qgis index --engine ray`
imports it. Ray itself is imported only by `ray_adapter`.
"""
