"""The plugin zip: what the QGIS plugin repository expects, nothing it forbids."""

from __future__ import annotations

import configparser
import zipfile
from pathlib import Path

from tools.package import MAX_BYTES, build, version

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_zip(tmp_path):
    path = build(tmp_path)
    assert path.name == f"geobridge_qgis-{version()}.zip"
    assert path.stat().st_size < MAX_BYTES
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta = configparser.ConfigParser()
        meta.read_string(z.read("geobridge_qgis/metadata.txt").decode())
    assert all(n.startswith("geobridge_qgis/") for n in names)
    for needed in ("__init__.py", "plugin.py", "LICENSE", "core/locate.py",
                   "processing/provider.py", "resources/icons/geobridge.svg",
                   "resources/styles/candidates.qml"):  # fmt: skip
        assert f"geobridge_qgis/{needed}" in names, needed
    assert meta["general"]["icon"] == "resources/icons/geobridge.svg"
    forbidden = (".onnx", ".so", ".pyc", ".pyd", ".dll", ".tif", ".jpg", ".faiss")
    assert not [n for n in names if n.endswith(forbidden) or "/demo/" in n]


def test_one_version_everywhere():
    """metadata.txt is the one version: the package, the exporter (so bundles record it) and
    pyproject.toml agree with it."""
    import tomllib

    import geobridge_qgis
    import model_export

    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    expected = meta["general"]["version"]
    assert geobridge_qgis.__version__ == expected == model_export.__version__
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["version"] == expected
