"""The first-use dependency installer: what is missing, the pins, the pip command, and the
dialog running a real QProcess (a fake pip stands in for the network)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT
from qgis.core import QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication

from geobridge_qgis import deps


def test_missing_is_empty_in_the_test_venv():
    assert deps.missing() == []


def test_missing_reports_a_package_whose_import_fails(monkeypatch):
    real = importlib.util.find_spec
    imported_before = set(sys.modules)

    def fake(name, *args, **kwargs):
        return None if name in ("faiss", "ftfy") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert deps.missing() == ["faiss-cpu", "ftfy"]
    # Nothing heavy is imported by the check.
    for heavy in ("onnxruntime", "faiss", "tokenizers", "ftfy"):
        assert heavy in imported_before or heavy not in sys.modules, heavy


def test_requirements_for_numpy1_host():
    reqs = deps.requirements_for("1.24.2", False)
    assert "faiss-cpu==1.8.0.post1" in reqs
    assert "onnxruntime==1.20.1" in reqs
    assert "tokenizers==0.23.3" in reqs and "ftfy==6.3.1" in reqs
    assert not any(r.lower().startswith("numpy") for r in reqs)
    assert all("==" in r for r in reqs)
    gpu = deps.requirements_for("1.24.2", True, ["onnxruntime", "ftfy"])
    assert gpu == ["onnxruntime-gpu==1.20.1", "ftfy==6.3.1"]
    with pytest.raises(ValueError):
        deps.requirements_for("1.24.2", False, ["torch"])


def test_requirements_for_numpy2_host_are_the_projects_pins():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.lower()] = version
    reqs = deps.requirements_for("2.1.0", False, list(deps.PINS_NUMPY2))
    for req in reqs:
        name, version = req.split("==")
        assert pins[name] == version, req
    assert set(deps.PINS_NUMPY2) == set(pins) - {"numpy"}


def test_constraints_pin_the_host_numpy_and_installed_packages():
    text = deps.constraints_text({"numpy": "1.24.2", "PyProj": "3.4.1", "GDAL": "3.6.2"})
    lines = text.splitlines()
    assert "numpy==1.24.2" in lines
    assert "pyproj==3.4.1" in lines and "gdal==3.6.2" in lines
    # Packages being installed are not constrained; unreadable versions are skipped.
    host = {"numpy": "1.24.2", "ftfy": "6.0", "odd": "1.0-deb~x", "six": "1.16.0+dfsg",
            "mpmath": "0.0.0"}  # fmt: skip
    text = deps.constraints_text(host, ["ftfy==6.3.1"])
    assert "ftfy==6.0" not in text and "odd" not in text
    # Debian 12's python3-mpmath says 0.0.0: pinned, pip could not install sympy (found by a
    # real `pip install` of the plugin's dependencies into QGIS 3.22's Python).
    assert "mpmath" not in text
    assert "six==1.16.0" in text.splitlines()
    # The real host: everything installed here is pinned at its installed version.
    host = deps.host_packages()
    assert host["numpy"] == importlib.metadata.version("numpy")
    text = deps.constraints_text(host)
    assert f"numpy=={importlib.metadata.version('numpy')}" in text.splitlines()
    assert f"pytest=={importlib.metadata.version('pytest')}" in text.splitlines()


def test_pip_command(tmp_path):
    cmd = deps.pip_command(tmp_path / "deps", ["ftfy==6.3.1"], tmp_path / "c.txt", python="/py")
    assert cmd[:4] == ["/py", "-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "deps")
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert cmd[cmd.index("-c") + 1] == str(tmp_path / "c.txt")
    assert cmd[cmd.index("--upgrade-strategy") + 1] == "only-if-needed"
    assert "--no-warn-script-location" in cmd
    assert cmd[-1] == "ftfy==6.3.1"
    assert deps.python_executable()  # here sys.executable, a python
    assert os.path.basename(deps.pip_command("d", [], "c")[0]).startswith("python")


# ---------------------------------------------------------------- QGIS's own interpreter

XY = "{}.{}".format(*sys.version_info[:2])
REAL_PYTHON = sys.executable  # before any test puts the qgis binary there

FAKE_PYTHON = """#!/bin/sh
echo "$0" >> "{log}"
exec "{real}" -c "import sys; sys.version_info = ({major}, {minor}, 0, 'final', 0); \\
sys.prefix = sys.base_prefix = '{prefix}'; exec(sys.argv[-1])" "$@"
"""


def fake_python(path, version: str, prefix, log):
    """A shell script standing in for another Python: it runs what it is given with the real
    interpreter but reports `version` and `prefix` as its own."""
    major, minor = version.split(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_PYTHON.format(log=log, real=REAL_PYTHON, major=major, minor=minor,
                                       prefix=prefix))  # fmt: skip
    path.chmod(0o755)
    return path


def fake_qgis(tmp_path, monkeypatch):
    """``sys.executable`` as inside QGIS: the qgis binary, which must never be run."""
    qgis = tmp_path / "qgis-bin" / "qgis"
    qgis.parent.mkdir()
    ran = tmp_path / "qgis-ran"
    qgis.write_text(f"#!/bin/sh\ntouch {ran}\n")
    qgis.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(qgis))
    monkeypatch.setattr(sys, "_base_executable", str(qgis), raising=False)
    return ran


def reported(python: str) -> tuple[str, str]:
    """(major.minor, base prefix) that an interpreter says of itself."""
    code = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    version, base = out.stdout.splitlines()
    return version, base


def test_another_python_first_on_path_is_skipped(tmp_path, monkeypatch):
    ran_qgis = fake_qgis(tmp_path, monkeypatch)
    log = tmp_path / "probes.log"
    # Another version, at the same prefix (as Debian's python3.9 beside python3.11 would be).
    fake = fake_python(tmp_path / "shims" / "python3", "3.9", sys.base_prefix, log)
    real_bin = Path(sys.base_prefix) / "bin"
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake.parent), str(fake.parent), str(real_bin)]))

    found = deps.find_python()
    assert Path(found).parent != fake.parent
    assert reported(found) == (XY, sys.base_prefix)
    assert deps.pip_command("d", ["ftfy==6.3.1"], "c.txt")[0] == found
    assert not ran_qgis.exists()  # the qgis binary is no candidate

    # PATH alone: the 3.9 shim comes first, is run once (listed twice) and skipped.
    candidates = deps.python_candidates(prefixes=[])
    assert candidates[0] == str(fake)
    assert candidates.count(str(fake)) == 1
    found = deps.find_python(candidates)
    assert log.read_text().splitlines() == [str(fake)]
    assert Path(found).parent == real_bin and reported(found) == (XY, sys.base_prefix)


def test_right_version_with_another_prefix_is_rejected(tmp_path):
    log = tmp_path / "probes.log"
    conda = tmp_path / "conda"
    fake = fake_python(conda / "bin" / f"python{XY}", XY, conda, log)
    with pytest.raises(
        deps.PythonNotFound, match=rf"{fake} \(another Python {XY}, prefix {conda}\)"
    ):
        deps.find_python([str(fake)])
    broken = tmp_path / "broken" / "python3"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    not_executable = tmp_path / "python"
    not_executable.write_text("")
    real = deps.find_python()
    assert deps.find_python([str(fake), str(broken), str(not_executable), real]) == real
    with pytest.raises(deps.PythonNotFound) as err:
        deps.find_python([str(broken), str(not_executable)])
    assert f"{broken} (no answer, exit code 3)" in str(err.value)
    assert f"{not_executable} (does not run:" in str(err.value)
    assert len(log.read_text().splitlines()) == 2  # one run per find_python


def test_no_python_of_qgis_gives_the_command_to_run_by_hand(tmp_path, monkeypatch, qgis_app):
    from geobridge_qgis.core.errors import UserError
    from geobridge_qgis.gui import install_dialog

    fake_qgis(tmp_path, monkeypatch)
    log = tmp_path / "probes.log"
    shims = tmp_path / "shims"
    fake_python(shims / "python3", "3.9", "/opt/conda", log)
    fake_python(shims / f"python{XY}", XY, "/opt/conda", log)
    real_bin = Path(sys.base_prefix) / "bin"
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), str(real_bin)]))
    # This QGIS's Python lives where no interpreter says it lives.
    qgis_prefix = tmp_path / "QGIS"
    for name in ("prefix", "base_prefix", "exec_prefix"):
        monkeypatch.setattr(sys, name, str(qgis_prefix))

    folder = tmp_path / "deps"
    with pytest.raises(deps.PythonNotFound) as err:
        deps.pip_command(folder, ["ftfy==6.3.1"], tmp_path / "c.txt")
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert f"(Python {XY}, prefix {qgis_prefix})" in message
    assert f"{shims / 'python3'} (Python 3.9)" in message
    assert f"{shims / f'python{XY}'} (another Python {XY}, prefix /opt/conda)" in message
    assert f"{real_bin / f'python{XY}'} (another Python {XY}, prefix {real_bin.parent})" in message
    manual = err.value.command
    assert manual[0] == f"python{XY}"
    assert manual[1:] == deps.pip_command(folder, ["ftfy==6.3.1"], tmp_path / "c.txt", "x")[1:]
    assert message.endswith(f"QGIS's own Python {XY}: " + shlex.join(manual))

    # The dialog shows the message and the command, and cannot install.
    monkeypatch.setattr(deps, "missing", lambda *a: ["ftfy"])
    monkeypatch.setattr(deps, "gpu_wanted", lambda: False)
    dialog = install_dialog.make_install_dialog(None, folder)
    assert not dialog.install_button.isEnabled()
    assert "by hand" in dialog.status.text() and "python3.9" not in dialog.status.text()
    assert dialog.command_view.toPlainText().startswith(f"python{XY} -m pip install --target")
    dialog.deleteLater()


def test_candidates_of_each_layout(tmp_path, monkeypatch):
    fake_qgis(tmp_path, monkeypatch)
    major, minor = sys.version_info[:2]

    def touch(*parts):
        path = tmp_path.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        return str(path)

    linux = [touch("usr", "bin", f"python{XY}"), touch("usr", "bin", "python3")]
    touch("usr", "bin", "python3-config")
    osgeo4w = touch("OSGeo4W", "apps", f"Python{major}{minor}", "python.exe")
    touch("OSGeo4W", "bin", "qgis-bin.exe")
    mac = touch("QGIS.app", "Contents", "MacOS", "bin", "python3")
    mac_prefix = tmp_path / "QGIS.app" / "Contents" / "Frameworks" / "Python.framework"
    on_path = touch("path", "python3")
    prefixes = [str(tmp_path / "usr"), str(tmp_path / "OSGeo4W" / "apps" / f"Python{major}{minor}"),
                str(tmp_path / "OSGeo4W"), str(mac_prefix)]  # fmt: skip
    found = deps.python_candidates(prefixes, path=str(tmp_path / "path"))
    assert found == [*linux, osgeo4w, mac, on_path]


def test_private_folder_and_activate(tmp_path, monkeypatch, qgis_app):
    from qgis.core import QgsApplication

    default = deps.private_folder()
    assert default == deps.Path(QgsApplication.qgisSettingsDirPath()) / "python" / "geobridge_deps"
    folder = tmp_path / "geobridge_deps"
    assert deps.private_folder(folder) == folder
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    assert deps.activate(folder) == folder
    assert sys.path == [*before, str(folder)]  # after QGIS's own paths
    deps.activate(folder)
    assert sys.path.count(str(folder)) == 1
    # What pip puts there afterwards is found.
    (folder / "geobridge_fake_dep").mkdir(parents=True)
    (folder / "geobridge_fake_dep" / "__init__.py").write_text("")
    deps.activate(folder)
    assert importlib.util.find_spec("geobridge_fake_dep") is not None


def test_processing_raises_naming_the_missing_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(deps, "missing", lambda *a: ["faiss-cpu", "tokenizers"])
    with pytest.raises(QgsProcessingException, match=r"faiss-cpu, tokenizers.*GeoBridge dock"):
        deps.require_for_processing(tmp_path / "deps")
    monkeypatch.setattr(deps, "missing", lambda *a: [])
    deps.require_for_processing(tmp_path / "deps")


# ---------------------------------------------------------------- the dialog

FAKE_PIP = """
import sys, time
print("Collecting", " ".join(a for a in sys.argv[1:] if "==" in a), flush=True)
time.sleep(0.2)
print("error: no matching distribution", file=sys.stderr, flush=True) if {code} else None
print("Successfully installed fake-1.0" if {code} == 0 else "giving up", flush=True)
sys.exit({code})
"""


def _run_dialog(tmp_path, code, qgis_app):
    from geobridge_qgis.gui.install_dialog import InstallDialog

    script = tmp_path / f"fake_pip_{code}.py"
    script.write_text(textwrap.dedent(FAKE_PIP.format(code=code)))
    folder = tmp_path / "deps"
    command = deps.pip_command(folder, ["ftfy==6.3.1"], tmp_path / "c.txt", python=sys.executable)
    command[1:3] = [str(script)]  # the fake stands in for "-m pip"
    dialog = InstallDialog(["ftfy"], command, folder)
    assert "ftfy" in dialog.intro.text()
    assert "--only-binary :all:" in dialog.command_view.toPlainText()
    assert dialog.output.isReadOnly()
    seen_running = []
    dialog.finished_install.connect(lambda ok: seen_running.append(ok))
    assert dialog.start()
    assert dialog.state == "running"  # asynchronous: start returns at once
    assert not dialog.install_button.isEnabled()
    deadline = time.monotonic() + 30
    while dialog.state == "running" and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    return dialog, seen_running


def test_dialog_runs_pip_and_shows_success(tmp_path, monkeypatch, qgis_app):
    monkeypatch.setattr(sys, "path", list(sys.path))
    dialog, signals = _run_dialog(tmp_path, 0, qgis_app)
    text = dialog.output.toPlainText()
    assert "Collecting ftfy==6.3.1" in text
    assert "Successfully installed fake-1.0" in text
    assert dialog.state == "succeeded" and dialog.succeeded() and signals == [True]
    assert "Installed" in dialog.status.text()
    assert sys.path[-1] == str(tmp_path / "deps")  # activated on success
    assert dialog.close_button.text() == "Close"
    dialog.deleteLater()


def test_dialog_shows_failure(tmp_path, monkeypatch, qgis_app):
    monkeypatch.setattr(sys, "path", list(sys.path))
    dialog, signals = _run_dialog(tmp_path, 1, qgis_app)
    text = dialog.output.toPlainText()
    assert "error: no matching distribution" in text and "giving up" in text
    assert "exit code 1" in text
    assert dialog.state == "failed" and signals == [False]
    assert "failed" in dialog.status.text()
    assert dialog.install_button.isEnabled()  # "Try again"
    assert str(tmp_path / "deps") not in sys.path
    dialog.deleteLater()


def test_make_install_dialog_and_ensure_dependencies(tmp_path, monkeypatch, qgis_app):
    from geobridge_qgis.gui import install_dialog

    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "deps"
    assert install_dialog.make_install_dialog(None, folder) is None  # nothing missing here
    assert install_dialog.ensure_dependencies(None, folder)

    monkeypatch.setattr(deps, "missing", lambda *a: ["faiss-cpu"])
    monkeypatch.setattr(deps, "gpu_wanted", lambda: False)
    dialog = install_dialog.make_install_dialog(None, folder)
    cmd = dialog.command
    assert cmd[cmd.index("--target") + 1] == str(folder)
    numpy = importlib.metadata.version("numpy")
    pin = deps.requirements_for(numpy, False, ["faiss-cpu"])[0]
    assert cmd[-1] == pin
    constraints = deps.Path(cmd[cmd.index("-c") + 1]).read_text().splitlines()
    assert f"numpy=={numpy}" in constraints
    dialog.deleteLater()

    shown = []
    monkeypatch.setattr(install_dialog.InstallDialog, "exec", lambda self: shown.append(self))
    assert not install_dialog.ensure_dependencies(None, folder)  # closed without installing
    assert len(shown) == 1


def test_dock_locate_does_nothing_when_dependencies_are_refused(qgis_iface, monkeypatch):
    from geobridge_qgis.gui import install_dialog
    from geobridge_qgis.gui.dock import GeoBridgeDock

    monkeypatch.setattr(install_dialog, "ensure_dependencies", lambda parent: False)
    dock = GeoBridgeDock(qgis_iface)
    dock.status.setText("")
    assert dock.locate() is False
    assert dock.task is None and dock.status.text() == ""
    dock.deleteLater()


PLUGIN_LOAD = """
import sys
import unittest.mock
sys.modules.setdefault("mock", unittest.mock)  # qgis.testing.mocked wants the old package
from qgis.testing import start_app
from qgis.testing.mocked import get_iface
app = start_app()
before = set(sys.modules)
import geobridge_qgis
plugin = geobridge_qgis.classFactory(get_iface())
plugin.initGui()
new = set(sys.modules) - before
heavy = sorted(m for m in new if m.split(".")[0] in
               ("onnxruntime", "faiss", "tokenizers", "ftfy", "PIL", "torch"))
print("HEAVY", heavy)
print("DEPS", "geobridge_qgis.gui.install_dialog" in sys.modules)
plugin.unload()
"""


def test_plugin_load_imports_no_engine_dependency(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    env["HOME"] = str(tmp_path)  # a throwaway QGIS profile
    proc = subprocess.run(
        [sys.executable, "-c", PLUGIN_LOAD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "DEPS False" in proc.stdout, proc.stdout + proc.stderr


def test_dialog_reports_a_python_that_cannot_start(tmp_path, qgis_app):
    from geobridge_qgis.gui.install_dialog import InstallDialog

    command = deps.pip_command(tmp_path / "deps", ["ftfy==6.3.1"], "c.txt", python="/no/python")
    dialog = InstallDialog(["ftfy"], command, tmp_path / "deps")
    assert dialog.start()
    deadline = time.monotonic() + 10
    while dialog.state == "running" and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert dialog.state == "failed"
    assert "cannot start /no/python" in dialog.output.toPlainText()
    dialog.deleteLater()
