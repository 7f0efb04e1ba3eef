# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test bench bench-peers clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.torch: | $(VENV)/bin/python
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[demo,tensorboard]"
	touch $@

demo: $(VENV)/.demo
	$(PY) -m ember.demos.digits

test: $(VENV)/.dev
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) lightning_logs demo_output
