#!/usr/bin/env bash
# Makes the project's environment: Debian packages (when root and missing), the venv with
# QGIS's Python visible through system site packages, and the pinned requirements.
# `make setup` calls this only when a requirements file changed, so a second run is instant.
set -euo pipefail
GPU="${GPU:-0}"
SCALE="${SCALE:-1}"
VENV="${VENV:-.venv}"
# libimage-exiftool-perl: the reference reading of real photos' metadata in the tests.
# xvfb, xdotool, imagemagick: `make test-desktop` runs the real QGIS on a virtual screen and
# photographs it.
DEBS="qgis python3-qgis python3-gdal python3-venv libimage-exiftool-perl xvfb xdotool imagemagick"

missing=""
for p in $DEBS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: missing Debian packages:$missing; run: sudo apt-get install$missing" >&2
    exit 1
  fi
fi

# QGIS's Python bindings live in Debian's interpreter only; the venv must be made from it.
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" -r requirements.txt -r requirements-dev.txt
# open_clip ships the CLIP BPE vocabulary; its other dependencies (torchvision, timm) are not
# needed to read the file or to run its reference tokenizer in the parity tests.
"${PIP[@]}" --no-deps -r requirements-vocab.txt
if [ "$GPU" = 1 ]; then
  # onnxruntime and onnxruntime-gpu share one import name: never both side by side.
  "$VENV/bin/python" -m pip uninstall -q -y onnxruntime || true
  "${PIP[@]}" -r requirements-gpu.txt
else
  if "$VENV/bin/python" -m pip show -q onnxruntime-gpu >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y onnxruntime-gpu
    "${PIP[@]}" --force-reinstall --no-deps "$(grep '^onnxruntime==' requirements.txt)"
  fi
fi
if [ "$SCALE" = 1 ]; then
  # The distributed build (geobridge_scale): Ray Data, pinned with the pyarrow that works with
  # numpy 1.x. The plugin and the demo never import it.
  "${PIP[@]}" -r requirements-scale.txt
fi
"$VENV/bin/python" - <<'PY'
import numpy, onnxruntime, faiss, tokenizers  # noqa: F401
from osgeo import gdal  # noqa: F401
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: GDAL needs numpy < 2"
print(f"setup: ok (numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"providers {','.join(onnxruntime.get_available_providers())})")
PY
