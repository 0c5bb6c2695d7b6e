"""Say why nothing came back: a search that can find nothing says so in one line before it
runs, writes no results and adds no layers."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProject
from test_gui import PHOTO_X, PHOTO_Y, gps_photo, wait_for

from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.service import LocateRequest, locate

# Inside the index (600 m of utm_raster), 400 m from the photo's GPS fix: outside its circle.
FAR_REGION = "500450,5500400,500600,5500550"


def region_wkt(x1: float, y1: float, x2: float, y2: float) -> tuple[str, str]:
    return f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))", "EPSG:32633"


def test_gps_circle_outside_the_region_is_said_before_running(
    tiny_bundle, tiny_index, utm_raster, tmp_path
):
    photo = gps_photo(utm_raster, tmp_path / "photo.jpg")[0]
    out = tmp_path / "results.gpkg"
    request = LocateRequest(tiny_bundle, tiny_index, photos=[photo], region=FAR_REGION, out=out)
    with pytest.raises(UserError) as e:
        locate(request)
    line = str(e.value)
    assert "\n" not in line and line.startswith("photo.jpg: its GPS circle (")
    assert "lies outside the search region" in line
    assert not out.exists()
    # The same region without the GPS limit, or the GPS limit without the region, both run.
    request.use_gps = False
    assert locate(request).queries[0].candidates
    request.use_gps, request.region = True, None
    assert locate(request).queries[0].candidates


def test_region_outside_the_index_is_said_before_running(tiny_bundle, tiny_index, tmp_path):
    out = tmp_path / "results.gpkg"
    far = region_wkt(510000, 5510000, 510500, 5510500)
    with pytest.raises(UserError, match=r"^the search region lies outside the index utm"):
        locate(LocateRequest(tiny_bundle, tiny_index, text="a field", region=far, out=out))
    between = region_wkt(500111, 5500611, 500119, 5500619)  # inside, but no chip centre
    with pytest.raises(UserError, match="holds no chip centre of the index"):
        locate(LocateRequest(tiny_bundle, tiny_index, text="a field", region=between, out=out))
    assert not out.exists()


def test_the_dock_task_reports_the_line_and_adds_no_layers(
    qgis_new_project, tiny_bundle, tiny_index, utm_raster, tmp_path
):
    from geobridge_qgis.tasks import LocateTask

    QgsProject.instance().setFileName(str(tmp_path / "p.qgz"))
    photo = gps_photo(utm_raster, tmp_path / "photo.jpg")[0]
    assert PHOTO_X < 500450 and PHOTO_Y > 5500550  # the fix lies outside FAR_REGION
    region = region_wkt(*map(float, FAR_REGION.split(",")))
    task = LocateTask(
        LocateRequest(
            tiny_bundle, tiny_index, photos=[photo], region=region, out=tmp_path / "r.gpkg"
        )
    )
    errors: list[str] = []
    task.failed.connect(errors.append)
    task.succeeded.connect(lambda _r: errors.append("succeeded"))
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: errors, 60)
    assert errors[0].startswith("photo.jpg: its GPS circle") and "\n" not in errors[0].strip()
    assert not task.cancelled_by_user
    assert QgsProject.instance().mapLayers() == {}
    assert QgsProject.instance().layerTreeRoot().findGroup("GeoBridge results") is None
    assert not (tmp_path / "p-geobridge-results.gpkg").exists()
