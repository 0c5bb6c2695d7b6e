"""Turn a GeoBridge PyTorch checkpoint into a self-describing, verified ONNX bundle: the model
(`model.py`), checkpoint loading (`checkpoint.py`), the export (`export.py`) with its tokenizer
(`tokenizer.py`), verification against the checkpoint (`verify.py`) and the export benchmark
(`bench_export.py`).

Needs PyTorch and transformers. Of this project it imports only the engine
(`geobridge_qgis.core`), which never imports it. The synthetic world is `synthworld`, training
and evaluation are `geolab`.
"""

from geobridge_qgis.core.version import __version__  # noqa: F401  (one version for all)
