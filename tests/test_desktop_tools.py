"""The parts of `make test-desktop` and `make qgis` that run outside QGIS: the environment QGIS
gets, the profile with the plugin installed from its zip, and how a run is judged."""

from __future__ import annotations

import json
import os

from qgis.PyQt.QtCore import QSettings

from tools import desktop_test, qgis_profile


def test_qgis_never_gets_the_venv(monkeypatch, tmp_path):
    venv = tmp_path / "venv"
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"]))
    monkeypatch.setenv("PYTHONPATH", str(venv / "lib/python3.11/site-packages"))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    env = qgis_profile.host_env()
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env and "QT_QPA_PLATFORM" not in env
    assert env["PATH"].split(os.pathsep) == ["/usr/bin", "/bin"]
    assert qgis_profile.host_env(["/diagnosis"])["PYTHONPATH"] == "/diagnosis"


def test_profile_has_the_plugin_from_its_zip_and_the_private_packages(tmp_path):
    deps = tmp_path / "deps"
    (deps / "faiss").mkdir(parents=True)
    (deps / "faiss" / "__init__.py").write_text("# stand-in\n")
    zip_path = qgis_profile.plugin_zip(tmp_path / "dist")
    index = str(tmp_path / "an index, with a comma")
    profile = qgis_profile.make_profile(
        tmp_path / "profiles", "p", deps, {"geobridge/dock/index": index}, plugin_zip_path=zip_path
    )
    assert profile == tmp_path / "profiles" / "profiles" / "p"
    plugin = profile / "python" / "plugins" / "geobridge_qgis"
    assert (plugin / "metadata.txt").is_file() and not plugin.is_symlink()
    linked = profile / "python" / "geobridge_deps" / "faiss" / "__init__.py"
    assert linked.stat().st_ino == (deps / "faiss" / "__init__.py").stat().st_ino
    ini = QSettings(str(profile / "QGIS" / "QGIS3.ini"), QSettings.Format.IniFormat)
    assert ini.value("PythonPlugins/geobridge_qgis") in (True, "true")
    assert ini.value("geobridge/dock/index") == index  # one string, not a list

    # `make qgis` keeps the profile (the user's changes) and replaces the link or the copy.
    (profile / "QGIS" / "kept.txt").write_text("x")
    qgis_profile.make_profile(tmp_path / "profiles", "p", deps, {}, fresh=False)
    assert (profile / "QGIS" / "kept.txt").is_file() and plugin.is_symlink()


def test_a_run_fails_on_python_errors_and_crash_traces(tmp_path):
    messages = tmp_path / "messages.jsonl"
    lines = [
        {"tag": "Processing", "level": 2, "message": "GRASS was not found or is not correctly "
         "installed"},
        {"tag": "GeoBridge", "level": 0, "message": "3 candidates"},
    ]  # fmt: skip
    messages.write_text("".join(json.dumps(m) + "\n" for m in lines))
    stderr = tmp_path / "stderr.log"
    stderr.write_text("Warning: QStandardPaths: XDG_RUNTIME_DIR not set\n")
    assert desktop_test.log_errors(messages, stderr) == []

    error = {"tag": "Python error", "level": 1, "message": "AttributeError: no succeeded"}
    with messages.open("a") as f:
        f.write(json.dumps(error) + "\n")
    stderr.write_text("munmap_chunk(): invalid pointer\nFatal Python error: Aborted\n")
    found = desktop_test.log_errors(messages, stderr)
    assert found[0] == "[Python error] AttributeError: no succeeded"
    assert "munmap_chunk" in found[1]
    assert desktop_test.describe_exit(-6) == "killed by SIGABRT"
    assert desktop_test.describe_exit(None).startswith("killed: QGIS did not quit")
