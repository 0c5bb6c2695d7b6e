"""Turn a GeoBridge PyTorch checkpoint into a self-describing ONNX bundle (and, for the demo,
make a synthetic world, train a small GeoBridge on it and evaluate it).

Needs PyTorch and transformers; the plugin's engine (`geobridge_qgis.core`) never imports this.
"""

from geobridge_qgis import __version__  # noqa: F401  (one version for all)
