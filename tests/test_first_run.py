"""The first run from the plugin zip: a dock with no bundle explains what a bundle is and gets
the demo model and world from a real HTTP server on 127.0.0.1, through QGIS's task manager,
as a person clicks it: installed and loaded, or cancelled and nothing left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from demo_server import DemoServer, demo_zip, leftovers
from qgis.core import QgsApplication, QgsProject, QgsSettings
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent, Qt
from qgis.PyQt.QtTest import QTest

from geobridge_qgis import settings

DOCK_BUNDLE = "geobridge/dock/bundle"


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        QgsApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture(scope="module")
def zip_bytes(tmp_path_factory) -> bytes:
    return demo_zip(tmp_path_factory.mktemp("release")).read_bytes()


@pytest.fixture
def server():
    with DemoServer() as s:
        yield s


@pytest.fixture
def saved_settings():
    s = QgsSettings()
    keys = (settings.DOWNLOAD_URL, settings.BUNDLES_FOLDER, DOCK_BUNDLE)
    saved = {k: s.value(k) for k in keys}
    for k in keys:
        s.remove(k)
    yield
    for k, v in saved.items():
        s.remove(k) if v is None else s.setValue(k, v)


@pytest.fixture
def dock(qgis_iface, qgis_new_project, saved_settings, monkeypatch, tmp_path):
    """A dock as in a zip install: no bundle chosen, no demo bundle beside the plugin."""
    from geobridge_qgis import settings
    from geobridge_qgis.gui import dock as dock_module

    monkeypatch.setattr(settings, "DEMO_BUNDLE", tmp_path / "no-demo-in-the-zip")
    QgsSettings().remove("geobridge/dock")
    d = dock_module.GeoBridgeDock(qgis_iface, qgis_iface.mainWindow())
    d.setFloating(True)
    d.resize(360, 900)
    d.show()
    d.first_run.target = tmp_path / "profile" / "geobridge" / "models" / "demo"
    yield d
    if not sip.isdeleted(d):  # one test deletes it as unloading the plugin does
        d.shutdown()
        d.close()
        d.deleteLater()
    QgsSettings().remove("geobridge/dock")


def test_no_bundle_offers_the_demo_and_explains(dock):
    panel = dock.first_run
    assert panel.isVisible() and panel.get_button.isEnabled()
    assert not panel.progress.isVisible() and not panel.cancel_button.isVisible()
    text = panel.intro.text()
    assert "model bundle" in text and "manifest.json" in text
    assert "#export-your-own-geobridge-weights" in text and panel.intro.openExternalLinks()
    dock.bundle_edit.setFilePath("/some/bundle")
    assert not panel.isVisible()
    dock.bundle_edit.setFilePath("")
    assert panel.isVisible()


def test_default_target_is_in_the_profile():
    from geobridge_qgis.gui.first_run import demo_folder

    profile = Path(QgsApplication.qgisSettingsDirPath())
    assert demo_folder() == profile / "geobridge" / "models" / "demo"


def test_get_the_demo_installs_and_loads_it(dock, server, zip_bytes, qgis_iface):
    url = server.publish("/v9/geobridge-demo.zip", zip_bytes)
    settings.set_download_url(url)
    panel = dock.first_run
    assert server.requests == []  # the network only when the user clicks
    QTest.mouseClick(panel.get_button, Qt.MouseButton.LeftButton)
    assert panel.task is not None and not panel.get_button.isEnabled()
    assert panel.cancel_button.isVisible()
    wait_for(lambda: panel.task is None)
    target = panel.target
    assert dock.bundle_edit.filePath() == str(target / "bundle"), panel.status.text()
    assert QgsSettings().value(DOCK_BUNDLE) == str(target / "bundle")
    assert settings.bundles_folder() == str(target.parent)
    assert "GeoBridge demo" in dock.bundle_info.text()  # the dock loaded the bundle
    assert not panel.isVisible()
    assert f"Demo model installed in {target}" in panel.status.text()
    (layer,) = QgsProject.instance().mapLayersByName("GeoBridge demo world")
    assert Path(layer.source()) == target / "world" / "satellite.tif"
    assert qgis_iface.activeLayer() is layer  # ready for "Build index of the active layer"
    assert leftovers(target.parent) == []


def test_a_failure_is_one_line_and_the_offer_stays(dock, server, zip_bytes):
    url = server.publish("/geobridge-demo.zip", zip_bytes, sha256="f" * 64)
    settings.set_download_url(url)
    panel = dock.first_run
    panel.start()
    wait_for(lambda: panel.task is None)
    assert panel.status.text().startswith(url + ": checksum mismatch")
    assert "color: #b00" in panel.status.styleSheet()
    assert panel.isVisible() and panel.get_button.isEnabled() and dock.bundle_edit.filePath() == ""
    assert leftovers(panel.target.parent) == [] and not panel.target.exists()


def test_cancel_leaves_nothing(dock, server, zip_bytes):
    url = server.publish("/geobridge-demo.zip", zip_bytes)
    server.hold_after["/geobridge-demo.zip"] = 1 << 20
    settings.set_download_url(url)
    panel = dock.first_run
    task = panel.start()
    wait_for(lambda: task.done > 0)  # the first megabyte arrived; the server now waits
    QTest.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    server.release.set()
    wait_for(lambda: panel.task is None)
    assert panel.status.text() == "Cancelled; nothing was installed."
    assert panel.isVisible() and panel.get_button.isEnabled() and dock.bundle_edit.filePath() == ""
    assert leftovers(panel.target.parent) == [] and not panel.target.exists()


def test_closing_the_dock_mid_download_cancels_it(dock, server, zip_bytes):
    url = server.publish("/geobridge-demo.zip", zip_bytes)
    server.hold_after["/geobridge-demo.zip"] = 1 << 20
    settings.set_download_url(url)
    panel = dock.first_run
    task = panel.start()
    target = panel.target
    results: list[str] = []
    task.taskTerminated.connect(lambda: results.append("terminated"))
    task.taskCompleted.connect(lambda: results.append("completed"))
    wait_for(lambda: task.done > 0)
    dock.deleteLater()  # what unloading the plugin does
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    server.release.set()
    wait_for(lambda: results)
    assert results == ["terminated"]
    assert leftovers(target.parent) == [] and not target.exists()
