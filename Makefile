# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup train test lint bench clean

setup: $(STAMP)

# The CPU build of torch 2.13.0 lies on this machine's disk; installing it first keeps pip
# from pulling a multi-GB CUDA build to satisfy the project's own torch requirement.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(PY) runners/train_agent.py --env corridor

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m runners.bench_envs
	$(PY) -m runners.bench_models
	$(PY) -m runners.bench_agent

clean:
	rm -rf $(VENV) runs checkpoints outputs
