#!/usr/bin/env bash
# The engine's tests with what the plugin's installer installs, under the host's own Python.
#
# QGIS 3.22 on Debian 12 embeds /usr/bin/python3 (3.11, numpy 1.24). This script:
# 1. fills a private folder the way the plugin does in a user's QGIS: `deps.plan()` and
#    `deps.pip_command()` run under that Python (host numpy pinned; faiss-cpu 1.8.0.post1,
#    onnxruntime 1.20.1, ... from PyPI), cached under out/host-deps/ by a key of the plan, so
#    a second run installs nothing;
# 2. installs pytest (the host has none) into a second folder, used only to run the tests;
# 3. exports the tiny test bundle with the venv (the host has no PyTorch: the exporter is not
#    part of what users install);
# 4. runs a subset of the engine's tests under the host Python, no venv: the repository, the
#    host's own packages, then the private folder (after them, as `deps.activate()` puts it in
#    QGIS), then the runner's folder. A usercustomize module appends the two folders, so the
#    Pythons the tests start (the command line) see them too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HOST_PY="${HOST_PYTHON:-/usr/bin/python3}"
VENV_PY="${VENV:-.venv}/bin/python"
OUT="$ROOT/out/host-deps"
mkdir -p "$OUT"

# The engine tests run under the host Python. Tests that need PyTorch are left out by
# tools/host_fixtures.py (they are named in the output).
TESTS=(
  tests/test_index.py   # index build, open, search, resume after a kill
  tests/test_locate.py  # locate on the tiny bundle, photo reading, results GeoPackage
  tests/test_refine.py  # re-ranking and refinement (OpenCV), priors from EXIF/XMP (Pillow)
  tests/test_tiling.py  # GDAL reads and the chip grid
)
# Filtered search (HNSW above the Flat threshold, searched with a region and with a GPS prior,
# on faiss-cpu 1.8): its tests run here as soon as the file exists.
if [ -e tests/test_filtered_search.py ]; then
  TESTS+=(tests/test_filtered_search.py)
else
  echo "test-host: tests/test_filtered_search.py does not exist yet: filtered search not run" >&2
fi

[ -x "$HOST_PY" ] || { echo "test-host: no $HOST_PY (Debian's python3)" >&2; exit 2; }
"$HOST_PY" -m pip --version >/dev/null 2>&1 ||
  { echo "test-host: $HOST_PY has no pip (Debian: apt-get install python3-pip)" >&2; exit 2; }
# Nothing from a venv or the user's site may leak into the host Python.
unset VIRTUAL_ENV PYTHONHOME
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
start=$SECONDS

# 1. The private folder, by the installer's own plan and pip command.
DEPS=$(PYTHONPATH="$ROOT" "$HOST_PY" -s - "$OUT" <<'PY'
import hashlib, json, os, shutil, subprocess, sys, sysconfig
from pathlib import Path

from geobridge_qgis import deps

out = Path(sys.argv[1])
# The CPU row: what a QGIS without an NVIDIA driver gets (onnxruntime, not onnxruntime-gpu).
deps.gpu_wanted = lambda: False
absent, requirements, constraints = deps.plan(out / "planning")  # the bare host: nothing added
key = hashlib.sha256(
    json.dumps([sys.version, sysconfig.get_platform(), requirements, constraints]).encode()
).hexdigest()[:16]
folder = out / f"deps-{key}"
if (folder / ".complete").exists():
    print(f"test-host: private folder cached: {folder}", file=sys.stderr)
else:
    shutil.rmtree(folder, ignore_errors=True)  # a run that stopped halfway
    folder.mkdir(parents=True)
    cfile = out / f"constraints-{key}.txt"
    cfile.write_text(constraints)
    command = deps.pip_command(folder, requirements, cfile)
    print("test-host: missing " + ", ".join(absent), file=sys.stderr)
    print("test-host: $ " + " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, stdout=sys.stderr)
    deps.activate(folder)
    still = deps.missing()
    if still:
        sys.exit(f"test-host: installed, yet these still do not import: {', '.join(still)}")
    (folder / ".complete").write_text(json.dumps({"requirements": requirements}) + "\n")
for stale in out.glob("deps-*"):
    if stale != folder:
        shutil.rmtree(stale, ignore_errors=True)
print(folder)
PY
)
installed=$SECONDS

# 2. pytest (at the project's pins) in its own folder: the test runner only, never the engine.
PINS=$(grep -E '^(pytest|pytest-timeout)==' requirements-dev.txt | sort | tr '\n' ' ')
RKEY=$( (echo "$PINS"; "$HOST_PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
RUNNER="$OUT/runner-$RKEY"
if [ ! -e "$RUNNER/.complete" ]; then
  rm -rf "$RUNNER"
  # shellcheck disable=SC2086
  "$HOST_PY" -m pip install -q --target "$RUNNER" --only-binary :all: $PINS >&2
  touch "$RUNNER/.complete"
fi

# 3. The tiny bundle of tests/conftest.py, exported with the venv; cached by the exporter's code.
BKEY=$(cat requirements-dev.txt model_export/*.py | sha256sum | cut -c1-16)
BUNDLE="$OUT/tiny-bundle-$BKEY"
if [ ! -e "$BUNDLE/.complete" ]; then
  rm -rf "$OUT"/tiny-bundle-*
  PYTHONPATH="$ROOT" "$VENV_PY" - "$BUNDLE" <<'PY'
import sys, tempfile
from pathlib import Path

import torch

from model_export import model as M
from model_export.export import export_bundle

torch.manual_seed(0)  # as tests/conftest.py's tiny_model
with tempfile.TemporaryDirectory() as tmp:
    ckpt = Path(tmp) / "tiny.pth"
    torch.save(M.GeoBridge(M.preset_config("tiny")).eval().state_dict(), ckpt)
    export_bundle(ckpt, Path(sys.argv[1]), M.preset_config("tiny"), "preset:tiny", name="tiny",
                  log=lambda _: None)
PY
  touch "$BUNDLE/.complete"
fi

# 4. The tests, under the host Python.
USERBASE="$OUT/userbase"
SITE=$(PYTHONUSERBASE="$USERBASE" PYTHONNOUSERSITE= "$HOST_PY" -c \
  'import site; print(site.getusersitepackages())')
mkdir -p "$SITE"
cat >"$SITE/usercustomize.py" <<PY
# Written by tools/test_host.sh: the plugin's private folder after the host's own packages (as
# deps.activate() puts it in QGIS), then the test runner's folder.
import sys

for entry in ("$DEPS", "$RUNNER"):
    if entry not in sys.path:
        sys.path.append(entry)
PY
prepared=$SECONDS
set +e
# Only the runner's plugins: none that a package of the private folder (anyio) brings along.
env -u PYTHONNOUSERSITE PYTHONUSERBASE="$USERBASE" PYTHONPATH="$ROOT" \
  GEOBRIDGE_HOST_DEPS="$DEPS" GEOBRIDGE_HOST_BUNDLE="$BUNDLE" QT_QPA_PLATFORM=offscreen \
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
  "$HOST_PY" -m pytest -p pytest_timeout -p tools.host_fixtures --noconftest "${TESTS[@]}" "$@"
rc=$?
set -e
echo "test-host: install $((installed - start)) s, preparation $((prepared - installed)) s," \
  "tests $((SECONDS - prepared)) s (exit code $rc)" >&2
exit $rc
