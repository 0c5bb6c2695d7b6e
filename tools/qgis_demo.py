"""`make qgis`: a fresh QGIS profile with this plugin linked in and a demo project.

Prepares out/qgis/: profiles/geobridge/python/plugins/geobridge_qgis (a link to this
repository's plugin, enabled in the profile's settings), the demo index (built once), and
demo.qgz with the demo satellite raster and the index's chip footprints; the dock's bundle and
index fields are pre-set to the demo's (photos to try: resources/demo/world/drone/). Then
starts QGIS on it when there is a display.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "out" / "qgis"
PROFILE = "geobridge"


def prepare() -> Path:
    # Preparing needs no window; QGIS itself is started later with the real platform.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from qgis.core import (
        QgsApplication,
        QgsProject,
        QgsRasterLayer,
        QgsReferencedRectangle,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSettings

    from geobridge_qgis import settings as plugin_settings
    from geobridge_qgis.core.bundle import Bundle
    from geobridge_qgis.core.encoders import Encoders
    from geobridge_qgis.core.index import build_index

    bundle = ROOT / "resources/demo/bundle"
    world = ROOT / "resources/demo/world"
    index = OUT / "demo-index"
    OUT.mkdir(parents=True, exist_ok=True)
    if not (index / "index.json").exists():
        shutil.rmtree(index.with_name("demo-index.partial"), ignore_errors=True)
        build_index(Encoders(Bundle.load(bundle)), world / "satellite.tif", index)

    plugins = OUT / "profiles" / PROFILE / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "geobridge_qgis"
    if not link.exists():
        link.symlink_to(ROOT / "geobridge_qgis", target_is_directory=True)

    app = QgsApplication([], False)
    app.initQgis()
    try:
        ini = OUT / "profiles" / PROFILE / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True, exist_ok=True)
        settings = QSettings(str(ini), QSettings.IniFormat)
        settings.setValue("PythonPlugins/geobridge_qgis", True)
        settings.setValue(plugin_settings.LAST_BUNDLE, str(bundle))
        settings.setValue(plugin_settings.LAST_INDEX, str(index))
        settings.sync()
        project = QgsProject.instance()
        sat = QgsRasterLayer(str(world / "satellite.tif"), "demo satellite")
        project.addMapLayer(sat)
        project.setCrs(sat.crs())
        project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(sat.extent(), sat.crs()))
        chips = QgsVectorLayer(f"{index / 'chips.gpkg'}|layername=chips", "index chips", "ogr")
        project.addMapLayer(chips)
        project.layerTreeRoot().findLayer(chips.id()).setItemVisibilityChecked(False)
        target = OUT / "demo.qgz"
        project.write(str(target))
        project.clear()
    finally:
        app.exitQgis()
    return target


def main() -> int:
    project = prepare()
    print(f"prepared {project} and the profile in {OUT / 'profiles' / PROFILE}")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        print("no display here: run `make qgis` on a desktop to open it")
        return 0
    site = next((ROOT / ".venv/lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("QT_QPA_PLATFORM", None)
    cmd = ["qgis", "--profiles-path", str(OUT), "--profile", PROFILE, str(project)]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
