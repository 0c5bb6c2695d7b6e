# GeoBridge for QGIS. `make demo` and `make test` are all a new user needs; each sets itself up.
SHELL := /bin/bash
GPU ?= 0
# SCALE=1 (the default) also installs the distributed build (requirements-scale.txt): CI runs
# its tests. SCALE=0 leaves Ray out of the venv; tests/test_scale.py then skips, saying why.
SCALE ?= 1
VENV := .venv
PY := $(VENV)/bin/python
# QGIS's own interpreter (Debian's QGIS embeds it): the desktop targets run with it, never the venv.
HOST_PY := /usr/bin/python3
STAMP := $(VENV)/.setup-gpu$(GPU)
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-host test-desktop lint format demo demo-model demo-release bench bench-export bench-engine bench-gpu bench-scale package qgis clean

setup: $(STAMP)

$(STAMP): tools/setup.sh requirements.txt requirements-dev.txt requirements-vocab.txt requirements-gpu.txt requirements-scale.txt constraints.txt
	GPU=$(GPU) SCALE=$(SCALE) VENV=$(VENV) tools/setup.sh
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

# The plugin in the real QGIS desktop (Xvfb, a fresh profile, the plugin from its zip, its packages
# from its own installer plan), driven as a person uses it: photo, Locate, Export, Build index,
# Locate again, quit. Screenshots and logs in out/desktop/; caches in out/qgis-cache/.
test-desktop: setup
	$(HOST_PY) tools/desktop_test.py

# The main job on the bundled demo model and world: out/demo/results.gpkg and map.png.
demo: setup
	$(PY) tools/demo.py

# Rebuild the demo model: 2,447 steps of batch 256 on 48 worlds (seeds 1000-1047, 60,000 pairs).
# `make demo-model DEVICE=cuda` on an NVIDIA GPU: as shipped, 4 min of training on one H200 after
# 2 min rendering on its 16 cores. On the CPU (the default) it resumes from its checkpoint in
# $(DEMO_OUT) each time this runs and stops after TRAIN_MINUTES (about 4 hours on 2 cores in all,
# from the rate measured at batch 128, 0.35 steps/s; not run to the end). The pairs are kept in
# $(DEMO_OUT)/pairs (8.8 GB) for the later runs. Once complete: export, evaluate on the demo
# world (seed 7, never trained on) and replace resources/demo/bundle (fp32 only: the demo model
# is small, and the repository stays small). A GPU and a CPU differ in rounding (bf16), so the
# same settings give a model of the same quality, not the same bytes.
DEMO_OUT := out/demo-model
TRAIN_MINUTES := 120
DEVICE := cpu
demo-model: setup
	mkdir -p $(DEMO_OUT)
	$(PY) -m geolab train --out $(DEMO_OUT) --steps 2447 --worlds 48 --batch 256 --lr 7e-4 \
	    --warmup 81 --device $(DEVICE) --workers $$(nproc) --pairs-cache $(DEMO_OUT)/pairs \
	    --max-minutes $(TRAIN_MINUTES)
	@$(PY) -c "import json, sys; done = json.load(open('$(DEMO_OUT)/train.json'))['complete']; \
	    done or print('training not finished: run make demo-model again to go on from its checkpoint'); \
	    sys.exit(0 if done else 1)"
	rm -rf $(DEMO_OUT)/bundle
	$(PY) -m model_export export --preset demo --checkpoint $(DEMO_OUT)/geobridge-demo.pth \
	    --towers drone,satellite,text --name "GeoBridge demo (synthetic worlds)" \
	    --license "GPL-2.0-or-later (trained by this project on synthetic data)" \
	    --precision fp32 --out $(DEMO_OUT)/bundle
	$(PY) -m geolab eval --bundle $(DEMO_OUT)/bundle --world resources/demo/world --out $(DEMO_OUT)/eval
	rm -rf resources/demo/bundle
	cp -r $(DEMO_OUT)/bundle resources/demo/bundle

# The release asset the plugin's "Get the demo model and world" downloads: dist/geobridge-demo.zip
# (resources/demo's bundle/ and world/, reproducible bytes) and its .sha256; upload both to the
# GitHub release v<version>.
demo-release:
	python3 tools/demo_release.py --out dist

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

# The on-disk IVF index at scale: synthetic embeddings through the distributed build's merge
# path (N=1e7 needs about 45 GB of disk and an hour on 2 cores; see docs/SCALE.md).
N ?= 1000000
bench-scale: setup
	$(PY) tools/bench_scale.py --n $(N) --out out/bench/scale

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

# QGIS (where there is a display) with the plugin linked into a profile, its packages in the profile's
# private folder from the plugin's own installer plan (never the venv), and the demo loaded.
qgis: setup
	QT_QPA_PLATFORM= $(HOST_PY) tools/qgis_demo.py

clean:
	rm -rf out dist .pytest_cache .ruff_cache
