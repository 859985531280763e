# Two commands on a fresh machine: `make train` and `make test`. Each creates
# .venv on first use.
#
# TORCH_SPEC picks the torch install. The default (plain `torch`) is what a GPU
# user wants: PyPI's CUDA build. On a CPU-only machine with a local wheel, pass
# e.g. `make test TORCH_SPEC=torch==2.13.0` (that is what .ci/run does).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint bench tensorboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,slurm,forecast,export,g2p,tagging]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/seqmodels-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check seqmodels hydra_plugins tests scripts
	$(BIN)/ruff format --check seqmodels hydra_plugins tests scripts
	$(BIN)/mypy seqmodels hydra_plugins

bench: $(STAMP)
	@for s in scripts/bench_*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done

# Served on localhost only; `make tensorboard TB_HOST=0.0.0.0` serves the network.
TB_HOST ?= 127.0.0.1
tensorboard: $(STAMP)
	@echo "open http://$(TB_HOST):6006/#custom_scalars (train vs validation per chart)"
	$(BIN)/tensorboard --logdir outputs --host $(TB_HOST)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache .mypy_cache
