"""Shared fixtures: a tiny GeoBridge with random weights, its checkpoint and its bundle.

Everything is real: the checkpoint is written with torch.save, the bundle by the exporter, and
sessions are onnxruntime's. The `tiny` preset keeps each export to a second or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Checksums are cached per user; tests must not read or write the real cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


def run_cli(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from model_export import model as M

    torch.manual_seed(0)
    return M.GeoBridge(M.preset_config("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    from model_export import model as M
    from model_export.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(
        tiny_checkpoint,
        out,
        M.preset_config("tiny"),
        "preset:tiny",
        name="tiny",
        log=lambda _: None,
    )
    return out
