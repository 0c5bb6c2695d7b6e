"""The plugin zip: what the QGIS plugin repository expects, nothing it forbids."""

from __future__ import annotations

import configparser
import zipfile

from tools.package import MAX_BYTES, build, version


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
