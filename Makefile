# Every target installs what it needs into .venv first, so a fresh clone needs only `make`.
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The versions this project is tested with; override for another platform, e.g. a CPU-only build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
# test processes (pytest-xdist): one per core; WORKERS=0 runs the suite in this process
WORKERS ?= auto

.PHONY: install train evaluate test test-fast lint format tensorboard benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,export,trackers]'
	touch $@

## train the default model (MLP) and test its best checkpoint; extra Hydra overrides via ARGS="..."
train: install
	$(PY) train.py $(ARGS)

## evaluate a checkpoint: make evaluate ARGS="ckpt_path=outputs/.../checkpoints/best.ckpt"
evaluate: install
	$(PY) evaluate.py $(ARGS)

## the whole test suite (what CI runs)
test: install
	$(PY) -m pytest -n $(WORKERS) $(ARGS)

## the suite without end-to-end subprocess runs
test-fast: install
	$(PY) -m pytest -n $(WORKERS) -m "not slow" $(ARGS)

## ruff, and import-linter's layer contract (pyproject.toml: tool.importlinter)
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

benchmark: install
	$(PY) benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
