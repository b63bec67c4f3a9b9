# pgolf — every target bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU-only machines get the CPU build of torch pinned here; machines with an
# NVIDIA driver get pip's default (CUDA) build of the same version.
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test test-parity bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pgolf demo

test: $(STAMP)
	$(PY) -m pytest tests

# Full-shape gradient and optimizer-step parity against ../shared/records (tens of minutes on 2 cores).
test-parity: $(STAMP)
	$(PY) -m pytest tests/parity -m parity_full

bench: $(STAMP)
	$(VENV)/bin/pgolf bench train --preset tiny --json --out benchmarks/results/train_tiny_cpu-2core.json

# ruff (style, bugs, imports) then pyright (types, basic mode); both read their settings from pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/pyright

clean:
	rm -rf $(VENV) runs .pytest_cache
