# Every target installs what it needs into .venv first, so a fresh clone needs only `make`.
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The versions this project is tested with; override for another platform, e.g. a CPU-only build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
# test processes (pytest-xdist): one per core; WORKERS=0 runs the suite in this process
WORKERS ?= auto
# the model family `make study` runs the study of: mlp or cnn
FAMILY ?= mlp

.PHONY: install install-dev train evaluate study test test-fast lint format tensorboard benchmark clean

## what training, evaluating, predicting and reporting need (no trackers, export or test tools)
install: $(VENV)/.installed

## and the extras the tests check: ONNX export, MLflow and W&B, pytest, ruff, import-linter, deptry, playwright
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,export,trackers]'
	touch $@

## train the default model (MLP) and test its best checkpoint; extra Hydra overrides via ARGS="..."
train: install
	$(PY) train.py $(ARGS)

## evaluate a checkpoint: make evaluate ARGS="ckpt_path=outputs/.../checkpoints/best.ckpt"
evaluate: install
	$(PY) evaluate.py $(ARGS)

## a family's whole study, each sweep then its report (hours; run it again to resume): make study FAMILY=cnn
study: install
	PYTHON=$(PY) scripts/study.sh $(FAMILY)

## the whole test suite (what CI runs)
test: install-dev
	$(PY) -m pytest -n $(WORKERS) --durations=15 $(ARGS)

## the suite without end-to-end subprocess runs
test-fast: install-dev
	$(PY) -m pytest -n $(WORKERS) -m "not slow" $(ARGS)

## ruff, import-linter's layer contract (tool.importlinter) and deptry's check of the declared dependencies
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

format: install-dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

benchmark: install-dev
	$(PY) benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
