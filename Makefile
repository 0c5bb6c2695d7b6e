# GeoBridge for QGIS. `make demo` and `make test` are all a new user needs; each sets itself up.
SHELL := /bin/bash
GPU ?= 0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-gpu$(GPU)
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint format bench bench-export clean

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

# Full-size export: vit-l-14 with random weights (time, size per tower, peak memory).
bench-export: setup
	$(PY) -m model_export.bench_export --out out/bench/export

bench: bench-export

clean:
	rm -rf out dist .pytest_cache .ruff_cache
