"""`make qgis`: QGIS with this plugin on a demo project, the way a user's QGIS runs it.

Prepares out/qgis/: the profile profiles/geobridge with this repository's plugin linked in
(edits show after a plugin reload) and enabled, and its private dependency folder
(python/geobridge_deps) filled by the plugin's own installer plan: QGIS's interpreter, QGIS's
numpy and other packages pinned (tools/qgis_profile.py); the demo index, built by the command
line with those same packages; demo.qgz with the demo satellite raster and the index's chip
footprints; the dock's bundle and index fields pre-set (photos to try:
resources/demo/world/drone/). Then starts QGIS on it when there is a display.

Runs with QGIS's own Python (/usr/bin/python3), never the project's venv, and QGIS starts
without PYTHONPATH: packages from a venv in front of QGIS's own crashed QGIS
(docs/DESKTOP.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import qgis_profile  # noqa: E402

OUT = ROOT / "out" / "qgis"
PROFILE = "geobridge"


def write_project(index: Path, target: Path) -> None:
    """demo.qgz: the demo satellite image and the index's chip footprints (hidden)."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # preparing needs no window
    from qgis.core import (
        QgsApplication,
        QgsProject,
        QgsRasterLayer,
        QgsReferencedRectangle,
        QgsVectorLayer,
    )

    app = QgsApplication([], False)
    app.initQgis()
    try:
        project = QgsProject.instance()
        sat = QgsRasterLayer(str(qgis_profile.DEMO_WORLD / "satellite.tif"), "demo satellite")
        project.addMapLayer(sat)
        project.setCrs(sat.crs())
        project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(sat.extent(), sat.crs()))
        chips = QgsVectorLayer(f"{index / 'chips.gpkg'}|layername=chips", "index chips", "ogr")
        project.addMapLayer(chips)
        project.layerTreeRoot().findLayer(chips.id()).setItemVisibilityChecked(False)
        if not project.write(str(target)):
            raise SystemExit(f"{target}: cannot write the project")
        project.clear()
    finally:
        app.exitQgis()


def prepare(index: Path | None = None) -> Path:
    """The profile and demo.qgz (`index`: the demo index, when the caller has it); the project."""
    deps = qgis_profile.deps_folder()
    index = index or qgis_profile.demo_index(deps)
    OUT.mkdir(parents=True, exist_ok=True)
    qgis_profile.make_profile(
        OUT,
        PROFILE,
        deps,
        {
            "geobridge/dock/bundle": str(qgis_profile.DEMO_BUNDLE),
            "geobridge/dock/index": str(index),
        },
        fresh=False,  # keep what the user changed in this profile since the last run
    )
    target = OUT / "demo.qgz"
    # In a child process: the caller may be about to start QGIS itself (make test-desktop), and
    # an initialised QgsApplication cannot be started twice in one process.
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from tools import qgis_demo; qgis_demo.write_project(Path(sys.argv[2]), Path(sys.argv[3]))"
    )
    subprocess.run(
        [qgis_profile.HOST_PYTHON, "-c", code, str(ROOT), str(index), str(target)],
        env=qgis_profile.host_env(),
        check=True,
    )
    return target


def main() -> int:
    project = prepare()
    print(f"prepared {project} and the profile in {OUT / 'profiles' / PROFILE}")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        print("no display here: run `make qgis` on a desktop to open it")
        return 0
    cmd = ["qgis", "--profiles-path", str(OUT), "--profile", PROFILE, str(project)]
    return subprocess.call(cmd, env=qgis_profile.host_env())


if __name__ == "__main__":
    sys.exit(main())
