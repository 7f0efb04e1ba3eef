# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench bench-peers gpu-check clean

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

# two workers (pytest-xdist) that take over each other's queued tests when one runs dry, so the few
# long tests do not finish alone at the end; `TEST_WORKERS=0` runs the suite in one process
TEST_WORKERS ?= 2
test: $(VENV)/.dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# ruff (lint rules, formatting, McCabe complexity <= 15) and mypy; settings in pyproject.toml
lint: $(VENV)/.dev
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

bench: $(VENV)/.dev
	$(PY) bench/run.py

# Everything that needs a GPU, as one command writing one report (bench/gpu-report.md, or $OUT/):
# the gpu-marked tests (AMP, no-sync under CUDA's sync debug mode, NCCL, FSDP, 2-GPU jobs when
# there are 2 GPUs) and the tiny/digits bench rows on CUDA. It uses the GPU machine's own PyTorch
# and installs nothing; Ember comes from this checkout.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py

# Lightning for side-by-side figures, in its own venv so Ember's environment never holds it;
# `make bench` (bench/run.py) picks it up when it exists. tensorboard too, so that both
# frameworks' default Trainer writes the same default logger.
PEERS ?= .venv-peers
bench-peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -c "import torch" 2>/dev/null || $(PEERS)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(PEERS)/bin/python -m pip install -q "pytorch-lightning==2.6.6" "tensorboard>=2.9"
	@echo "Lightning installed in $(PEERS); \`make bench\` now runs it beside Ember."

clean:
	rm -rf $(VENV) lightning_logs demo_output
