"""Unloading the plugin (QGIS closing, or the plugin being reloaded) while the dock builds an
index or locates: the job is cancelled, nothing of it reaches the project afterwards, and
everything the plugin added goes (checked as in test_plugin)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import qgis.utils
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer
from test_plugin import assert_nothing_left, load_plugin, restore_plugin_modules  # noqa: F401

from geobridge_qgis import settings


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        QgsApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture
def plugin(qgis_iface, qgis_processing, qgis_new_project, monkeypatch, request):
    """The plugin loaded by QGIS's loader, its dock open; unloaded by the test."""
    request.getfixturevalue("restore_plugin_modules")
    saved = settings.index_cache_folder(), settings.chip_sizes()
    settings.clear_dock()
    load_plugin(qgis_iface, monkeypatch)
    loaded = qgis.utils.plugins["geobridge_qgis"]
    loaded.show_dock(True)
    bugs: list[str] = []

    def record(message, tag, level):
        if tag == "GeoBridge" and level == Qgis.MessageLevel.Critical:
            bugs.append(message)

    QgsApplication.messageLog().messageReceived.connect(record)
    yield loaded
    QgsApplication.messageLog().messageReceived.disconnect(record)
    if "geobridge_qgis" in qgis.utils.plugins:
        qgis.utils.unloadPlugin("geobridge_qgis")
    settings.set_index_cache_folder(saved[0])
    settings.set_chip_sizes(saved[1])
    settings.clear_dock()
    assert bugs == []  # unload logs a part that failed: none may


def ends(task) -> list[str]:
    """How `task` ended, once it has: ["completed"] or ["terminated"]."""
    ended: list[str] = []
    task.taskCompleted.connect(lambda: ended.append("completed"))
    task.taskTerminated.connect(lambda: ended.append("terminated"))
    return ended


def test_unload_during_an_index_build(plugin, qgis_iface, tiny_bundle, utm_raster, tmp_path):
    settings.set_index_cache_folder(str(tmp_path))
    settings.set_chip_sizes([20])  # ~3,500 chips: many shards, the unload lands mid-way
    dock = plugin.dock
    dock.bundle_edit.setFilePath(str(tiny_bundle))
    layer = QgsRasterLayer(str(utm_raster), "satellite")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    assert dock.build_index()
    task = dock.task
    assert type(task).__name__ == "QgsProcessingAlgRunnerTask"
    ended = ends(task)
    wait_for(lambda: dock.progress.value() > 0)  # under way: a shard is saved
    layers = set(QgsProject.instance().mapLayers())

    assert qgis.utils.unloadPlugin("geobridge_qgis")  # False if unload raised
    assert_nothing_left(qgis_iface.mainWindow(), qgis_iface)
    wait_for(lambda: ended)
    assert ended == ["terminated"]  # cancelled, not finished
    (partial,) = tmp_path.iterdir()
    assert partial.name.endswith(".partial")  # the work done, kept for a resume
    assert list((partial / "shards").glob("*.npz"))
    QgsApplication.processEvents()
    assert set(QgsProject.instance().mapLayers()) == layers  # no chips layer


def test_unload_during_a_locate(plugin, qgis_iface, tiny_bundle, tiny_index, monkeypatch):
    from geobridge_qgis.core import service

    # Hold the engine until the task is cancelled, so that the unload lands mid-run; the real
    # service then runs and stops at its first cancel check, which waits until QGIS has
    # dropped the plugin's modules: the latest an unload can leave an engine thread running.
    # What it raises then must still read as a cancellation (not as a bug) to the task.
    real = service.locate
    running: list[bool] = []
    at_check, purged = threading.Event(), threading.Event()

    def held_locate(request, progress=None, cancelled=None, log=None):
        running.append(True)
        deadline = time.monotonic() + 60
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)

        def cancelled_after_the_purge() -> bool:
            at_check.set()
            purged.wait(60)
            return cancelled()

        return real(request, progress, cancelled_after_the_purge, log)

    drop_modules = qgis.utils._unloadPluginModules

    def drop_modules_mid_run(name: str) -> None:
        at_check.wait(60)
        drop_modules(name)
        # QGIS drops the modules it saw the plugin import: in a desktop session all of them
        # (here other tests imported some first, so the rest go by hand).
        for module in [m for m in sys.modules if m.split(".")[0] == "geobridge_qgis"]:
            del sys.modules[module]
        purged.set()

    monkeypatch.setattr(service, "locate", held_locate)
    monkeypatch.setattr(qgis.utils, "_unloadPluginModules", drop_modules_mid_run)
    dock = plugin.dock
    dock.bundle_edit.setFilePath(str(tiny_bundle))
    dock.index_edit.setFilePath(str(tiny_index))
    dock.text_edit.setPlainText("a green field")
    assert dock.locate()
    task = dock.task
    ended = ends(task)
    wait_for(lambda: running)

    assert qgis.utils.unloadPlugin("geobridge_qgis")
    assert_nothing_left(qgis_iface.mainWindow(), qgis_iface)
    wait_for(lambda: ended)
    assert ended == ["terminated"] and task.cancelled_by_user, task.error
    QgsApplication.processEvents()
    assert QgsProject.instance().mapLayers() == {}  # no result layers
    assert QgsProject.instance().layerTreeRoot().findGroup("GeoBridge results") is None
