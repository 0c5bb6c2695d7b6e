# GeoBridge for QGIS. `make demo` and `make test` are all a new user needs; each sets itself up.
SHELL := /bin/bash
GPU ?= 0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-gpu$(GPU)
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-host lint format demo demo-model bench bench-export bench-engine bench-gpu package qgis clean

setup: $(STAMP)

$(STAMP): tools/setup.sh requirements.txt requirements-dev.txt requirements-vocab.txt requirements-gpu.txt constraints.txt
	GPU=$(GPU) VENV=$(VENV) tools/setup.sh
	rm -f $(VENV)/.setup-gpu*
	touch $@

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest

# The engine's tests under Debian's /usr/bin/python3 (QGIS 3.22's Python, numpy 1.24) with the
# packages the plugin's installer puts in QGIS, no venv (tools/test_host.sh). The first run
# downloads them (about 115 MB); later runs reuse out/host-deps/.
test-host: setup
	tools/test_host.sh

# The main job on the bundled demo model and world: out/demo/results.gpkg and map.png.
demo: setup
	$(PY) tools/demo.py

# Rebuild the demo world and model (about 35 minutes on 2 cores): a held-out world (seed 7,
# never used in training), training on worlds 1000-1011, export, evaluation.
DEMO_OUT := out/demo-model
demo-model: setup
	rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	$(PY) -m model_export synth --seed 7 --size-km 2 --photos 40 --out $(DEMO_OUT)/world
	$(PY) -m model_export train --out $(DEMO_OUT)
	$(PY) -m model_export export --preset demo --checkpoint $(DEMO_OUT)/geobridge-demo.pth \
	    --towers drone,satellite,text --name "GeoBridge demo (synthetic worlds)" \
	    --license "GPL-2.0-or-later (trained by this project on synthetic data)" --out $(DEMO_OUT)/bundle
	$(PY) -m model_export eval --bundle $(DEMO_OUT)/bundle --world $(DEMO_OUT)/world --out $(DEMO_OUT)/eval
	rm -rf resources/demo/bundle resources/demo/world
	cp -r $(DEMO_OUT)/bundle resources/demo/bundle
	cp -r $(DEMO_OUT)/world resources/demo/world

# Full-size export: vit-l-14 with random weights (time, size per tower, peak memory).
bench-export: setup
	$(PY) -m model_export.bench_export --out out/bench/export

# Engine figures in one run (tools/bench_engine.py): CPU flags, vit-l-14 int8 vs fp32, index
# build rate with and without flip, exact and approximate search at 1e6 x 768, build memory;
# out/bench/engine/result.json, rendered into docs/BENCHMARKS.md. QUICK=1: fewer images, chips
# and queries (the vit-l-14 satellite export, made once, is the same).
bench-engine: setup
	$(PY) tools/bench_engine.py --out out/bench/engine $(if $(filter 1,$(QUICK)),--quick)
	$(PY) tools/render_benchmarks.py

bench: bench-engine

# vit-l-14 fp16 on an NVIDIA GPU (CUDA and TensorRT providers, batch sweep, index build rate,
# GPU memory) into out/bench/gpu/result.json, under 10 minutes; says "no NVIDIA GPU" without one.
bench-gpu: setup
	$(PY) tools/bench_gpu.py --out out/bench/gpu

# The plugin zip for the QGIS plugin repository; bandit must find nothing of medium or high
# severity (low findings are listed by `bandit -r geobridge_qgis`).
package: setup
	$(VENV)/bin/bandit -q -r geobridge_qgis -ll
	$(PY) tools/package.py --out dist

# QGIS (where there is a display) with the plugin linked into a fresh profile and the demo loaded.
qgis: setup
	QT_QPA_PLATFORM= $(PY) tools/qgis_demo.py

clean:
	rm -rf out dist .pytest_cache .ruff_cache
