# mpm-inr — `make train` and `make test` work on a fresh clone (they create .venv and install first).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch is installed on its own first: the CPU wheel (2.13.0) on CPU-only machines, so the install never pulls
# a multi-GB CUDA build there. Override with TORCH_SPEC=... on a GPU machine if you want another build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: help install train warm test test-slow bench bench-threads faults explore landscape wandb-sync clean lint

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --progress-bar off "$(TORCH_SPEC)"
	$(PIP) install --progress-bar off -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install mpm-inr with the dev extras

train: $(STAMP)  ## generate the default dataset if missing, then train the default field (Jp)
	$(PY) train.py $(ARGS)

warm: $(STAMP)  ## start a warm server: later `python train.py` runs skip the imports (stop: python -m mpm_inr.warm stop)
	$(PY) -m mpm_inr.warm start $(ARGS)

test: $(STAMP)  ## the fast test suite (what CI runs)
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP)  ## the slow tests (physics over 10k steps, convergence targets)
	$(PY) -m pytest -q -m slow $(ARGS)

bench: $(STAMP)  ## simulator + training benchmarks -> bench_results/*.json and .md
	$(PY) -m mpm_inr.bench sim $(ARGS)
	$(PY) -m mpm_inr.bench train $(ARGS)

bench-threads: $(STAMP)  ## training time by CPU thread count, idle and busy, 1 job and 2 at once (~3 min)
	$(PY) -m mpm_inr.bench threads $(ARGS)

faults: $(STAMP)  ## fault-injection suite with its summary table
	$(PY) -m pytest -q -m slow tests/faults $(ARGS)

explore: $(STAMP)  ## a short offline study on discs_small (1 block x 4 iterations)
	$(PY) -m agent explore name=demo_study field=Jp policy=heuristic n_blocks=1 n_iter_block=4 \
		'train_overrides=[scenario=discs_small,train.total_steps=300,trainer=cpu]' \
		'limits={train.total_steps:[10,300]}' $(ARGS)

landscape: $(STAMP)  ## the reference study (conf/agent/plan/landscape.yaml), resumable -> docs/landscape; DRY_RUN=1 prints the plan and its estimate
	$(PY) -m agent landscape $(if $(DRY_RUN),--dry-run) $(ARGS)

wandb-sync: $(STAMP)  ## sync every offline W&B run (needs WANDB_API_KEY and network)
	@find . -path ./$(VENV) -prune -o -type d -name 'offline-run-*' -print | while read -r d; do $(VENV)/bin/wandb sync "$$d"; done

lint: $(STAMP)
	$(VENV)/bin/ruff check mpm_inr agent tests train.py generate.py

clean:  ## remove outputs, caches and the venv (datasets in data/ are kept)
	rm -rf outputs multirun bench_results .pytest_cache .hypothesis .ruff_cache $(VENV) *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
