"""pytest plugin for `tools/test_host.sh`: the engine's tests under the host's Python.

It stands in for tests/conftest.py (the run passes ``--noconftest``): the same fixtures, except
that the tiny bundle is the one the script exported with the venv, since the host has no
PyTorch (and users never install it). Tests that need PyTorch themselves, or the project's
tooling rather than the engine, are deselected and named in the output. Before any test, it
checks that the run really is the host's: no venv, numpy from the host, the installer's
packages from the private folder (``GEOBRIDGE_HOST_DEPS``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # where the test modules import conftest from, too

from conftest import *  # noqa: E402, F403 - its fixtures and helpers, as the tests know them
from conftest import _private_cache  # noqa: E402, F401

# Made with PyTorch: not in the host.
TORCH_FIXTURES = ("tiny_model", "tiny_checkpoint")
del tiny_model, tiny_checkpoint  # noqa: F821

# Host packages (never from the private folder) and the installer's (always from it).
HOST = ("numpy", "osgeo.gdal", "pyproj", "PIL")
INSTALLED = ("faiss", "onnxruntime", "tokenizers", "ftfy", "cv2")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """tests/conftest.py's tiny bundle, exported beforehand by the venv (copied: read-only)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    shutil.copytree(os.environ["GEOBRIDGE_HOST_BUNDLE"], out)
    (out / ".complete").unlink(missing_ok=True)
    return out


def _where(module: str) -> tuple[str, str]:
    mod = importlib.import_module(module)
    top = sys.modules[module.split(".")[0]]
    version = getattr(top, "__version__", None) or getattr(mod, "__version__", "?")
    return str(version), str(Path(mod.__file__).resolve())


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"host python: {sys.executable} {sys.version.split()[0]} (prefix {sys.prefix})"]
    for module in (*HOST, *INSTALLED):
        version, path = _where(module)
        lines.append(f"  {module} {version}: {path}")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    folder = Path(os.environ["GEOBRIDGE_HOST_DEPS"]).resolve()
    problems = []
    if sys.prefix != sys.base_prefix or any(".venv" in p for p in sys.path):
        problems.append(f"runs in a venv: {sys.prefix}")
    for module in HOST:
        if folder in Path(_where(module)[1]).parents:
            problems.append(f"{module} comes from the private folder, not the host")
    for module in INSTALLED:
        if folder not in Path(_where(module)[1]).parents:
            problems.append(f"{module} does not come from the private folder")
    if problems:
        raise pytest.UsageError("test-host: " + "; ".join(problems))


# Tests of the project's tooling rather than the engine, in the files run here.
NOT_ENGINE = {
    "tests/test_refine.py::test_ground_homography_matches_the_renderer": "model_export.render, "
    "the world renderer, with shapely",
}


def _why_not(item: pytest.Item) -> str | None:
    if set(TORCH_FIXTURES) & set(getattr(item, "fixturenames", ())):
        return "PyTorch"
    return NOT_ENGINE.get(item.nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    left_out = [(i, _why_not(i)) for i in items if _why_not(i)]
    if left_out:
        items[:] = [i for i in items if not _why_not(i)]
        config.hook.pytest_deselected(items=[i for i, _ in left_out])
        for item, why in left_out:
            print(f"\ntest-host: not run under the host (needs {why}): {item.nodeid}", end="")
        print()
