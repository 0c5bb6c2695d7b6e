"""A QGIS profile with the plugin as a user gets it, for `make qgis` and `make test-desktop`.

A user's QGIS runs the plugin with QGIS's own Python (Debian: /usr/bin/python3.11) and the
engine's packages in the profile's private folder (``<profile>/python/geobridge_deps``), put
there by the plugin's installer (`geobridge_qgis.deps`): pip with QGIS's interpreter, QGIS's
numpy and other packages pinned. Here the same plan fills that folder, once per plan (cached
under out/qgis-cache/), and the folder is linked file by file into each fresh profile.

Never the project's venv on QGIS's PYTHONPATH: its packages, loaded into the QGIS process in
front of QGIS's own, made QGIS abort (docs/DESKTOP.md says which and why).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "out" / "qgis-cache"
# QGIS's own interpreter: Debian's QGIS embeds /usr/bin/python3's libpython.
HOST_PYTHON = os.environ.get("GEOBRIDGE_HOST_PYTHON", "/usr/bin/python3")
DEMO_BUNDLE = ROOT / "resources" / "demo" / "bundle"
DEMO_WORLD = ROOT / "resources" / "demo" / "world"
PLUGIN = "geobridge_qgis"

_TARGET, _CONSTRAINTS = "@TARGET@", "@CONSTRAINTS@"  # filled in once the cache key is known
# Asks the plugin's own installer, run by QGIS's interpreter, what it would install.
_PLAN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from geobridge_qgis import deps
absent, requirements, constraints = deps.plan(sys.argv[2])
command = deps.pip_command(sys.argv[2], requirements, sys.argv[3], python=sys.executable)
print(json.dumps({"missing": absent, "requirements": requirements,
                  "constraints": constraints, "command": command,
                  "python": sys.version.split()[0]}))
"""


def host_env(extra_pythonpath: list[str] | None = None) -> dict[str, str]:
    """The environment for QGIS and its interpreter: this one without any venv or PYTHONPATH
    (a `make` run from an activated venv must not leak it), plus `extra_pythonpath` for
    diagnosis only."""
    env = dict(os.environ)
    venv = env.pop("VIRTUAL_ENV", None)
    for key in ("PYTHONPATH", "PYTHONHOME", "QT_QPA_PLATFORM", "PYTHONSTARTUP"):
        env.pop(key, None)
    drop = [p for p in (venv, str(ROOT / ".venv")) if p]
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not any(p.startswith(d) for d in drop)
    )
    if extra_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(extra_pythonpath)
    return env


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def install_plan() -> dict:
    """The installer's plan on this host (missing packages, pins, constraints, pip command)."""
    out = subprocess.run(
        [HOST_PYTHON, "-c", _PLAN, str(ROOT), _TARGET, _CONSTRAINTS],
        env={**host_env(), "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def deps_folder(log=print) -> Path:
    """The private dependency folder the installer's plan makes, cached under out/ by the plan
    (the requirements and the constraints, which carry the host's numpy)."""
    plan = install_plan()
    key = _digest(plan["requirements"], plan["constraints"], plan["python"])
    target = CACHE / f"deps-{key}"
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    constraints = CACHE / f"deps-{key}.constraints.txt"
    constraints.write_text(plan["constraints"])
    if plan["requirements"]:
        # The plugin's own pip command, pointed at this cache folder.
        fill = {_TARGET: str(partial), _CONSTRAINTS: str(constraints)}
        command = [fill.get(c, c) for c in plan["command"]]
        log(f"installing {', '.join(plan['requirements'])} with {command[0]} into {target}")
        env = {**host_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    (partial / ".complete").write_text(json.dumps(plan, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def host_run(deps: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m geobridge_qgis ARGS` with QGIS's interpreter and the private folder,
    appended to sys.path as the plugin's `deps.activate()` does."""
    code = (
        "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.path.append(sys.argv.pop(1)); "
        "sys.argv[0] = 'geobridge_qgis'; runpy.run_module('geobridge_qgis', run_name='__main__')"
    )
    cmd = [HOST_PYTHON, "-c", code, str(ROOT), str(deps), *args]
    return subprocess.run(cmd, env=host_env(), check=True, **kwargs)


def demo_index(deps: Path, log=print) -> Path:
    """The demo world's index, built with the command line and the host's packages (the
    faiss that reads it in QGIS), cached by the bundle, the raster and the packages."""
    raster = DEMO_WORLD / "satellite.tif"
    st = raster.stat()
    key = _digest(
        (DEMO_BUNDLE / "manifest.json").read_text(), st.st_size, st.st_mtime_ns, deps.name
    )
    target = CACHE / f"demo-index-{key}"
    if (target / "index.json").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(target.with_name(target.name + ".partial"), ignore_errors=True)
    log(f"building the demo index in {target}")
    host_run(
        deps, ["index", "--bundle", str(DEMO_BUNDLE), "--raster", str(raster), "--out", str(target)]
    )
    return target


def link_tree(source: Path, target: Path) -> None:
    """A copy of `source` made of hard links (a second of work for 500 MB), real copies where
    links are impossible (another file system)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, symlinks=True)


def plugin_zip(out_dir: Path) -> Path:
    """The plugin zip exactly as `make package` builds it (without the bandit scan)."""
    sys.path.insert(0, str(ROOT))
    from tools import package

    return package.build(out_dir)


def write_settings(profile: Path, values: dict[str, object]) -> None:
    """Set `values` ({"section/key": value}) in the profile's QGIS3.ini, keeping what is there
    (QSettings writes it: QGIS reads it back the same way)."""
    from qgis.PyQt.QtCore import QSettings

    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    settings = QSettings(str(ini), QSettings.Format.IniFormat)
    for key, value in values.items():
        settings.setValue(key, value)
    settings.sync()
    if settings.status() != QSettings.Status.NoError:
        raise SystemExit(f"{ini}: cannot write the QGIS settings")


def make_profile(
    profiles: Path,
    name: str,
    deps: Path,
    settings: dict[str, object],
    plugin_zip_path: Path | None = None,
    fresh: bool = True,
) -> Path:
    """The profile `profiles/profiles/<name>` (emptied first when `fresh`): the plugin
    unzipped from `plugin_zip_path` (else linked to this repository, so that a developer's
    edits show after a plugin reload), enabled; the private dependency folder, refilled from
    `deps`; QGIS3.ini with `settings` ({"section/key": value}) set. Its folder."""
    profile = profiles / "profiles" / name
    if fresh:
        shutil.rmtree(profile, ignore_errors=True)
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    installed = plugins / PLUGIN
    if installed.is_symlink() or installed.is_file():
        installed.unlink()
    shutil.rmtree(installed, ignore_errors=True)
    if plugin_zip_path is not None:
        with zipfile.ZipFile(plugin_zip_path) as z:
            z.extractall(plugins)
    else:
        installed.symlink_to(ROOT / PLUGIN, target_is_directory=True)
    private = profile / "python" / "geobridge_deps"
    shutil.rmtree(private, ignore_errors=True)
    link_tree(deps, private)
    write_settings(
        profile,
        {
            f"PythonPlugins/{PLUGIN}": True,
            "qgis/checkVersion": False,  # no network check on start
            # The welcome page's news feed (a network fetch, then a panel).
            "core/NewsFeed/httpsfeedqgisorg/disabled": True,
            **settings,
        },
    )
    return profile
