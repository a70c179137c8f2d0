# Every target installs what it needs into .venv first, so a fresh clone needs only `make`.
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The versions this project is tested with; override for another platform, e.g. a CPU-only build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=

.PHONY: install train eval test test-fast lint format tensorboard benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,export]'
	touch $@

## train the default model (MLP) and test its best checkpoint; extra Hydra overrides via ARGS="..."
train: install
	$(PY) train.py $(ARGS)

## evaluate a checkpoint: make eval ARGS="ckpt_path=outputs/.../checkpoints/best.ckpt"
eval: install
	$(PY) eval.py $(ARGS)

## the whole test suite (what CI runs)
test: install
	$(PY) -m pytest $(ARGS)

## the suite without end-to-end subprocess runs
test-fast: install
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

benchmark: install
	$(PY) benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
