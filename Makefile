# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY_STAMP := $(VENV)/.installed-study
STUDY ?= configs/studies/corridor_cpu.toml
WORKERS ?= 2
THREADS ?= 1
OUT ?=

.PHONY: setup train test lint bench study clean

setup: $(STAMP)

# The CPU build of torch 2.13.0 lies on this machine's disk; installing it first keeps pip
# from pulling a multi-GB CUDA build to satisfy the project's own torch requirement.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The study runner's statistics (rliable: scipy, pandas, arch), submitit, the peer (sb3-contrib's RecurrentPPO)
# and POPGym's envs, kept out of the core install. make test installs them too (under a minute and about 300 MB beside
# torch's 1.2 GB), so that the study and peer tests run rather than skip; pytest in a core-only venv skips them.
$(STUDY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,study,cluster,bench,popgym]'
	touch $(STUDY_STAMP)

train: $(STAMP)
	$(PY) runners/train_agent.py --env corridor

# make study STUDY=configs/studies/portal_cpu.toml WORKERS=2 THREADS=1 [OUT=docs/studies/portal_cpu]
# OUT under docs/studies/ keeps the finished cells' results under git (docs/studies/.gitignore).
study: $(STUDY_STAMP)
	$(PY) -m runners.study $(STUDY) --workers $(WORKERS) --threads $(THREADS) $(if $(OUT),--out $(OUT))

test: $(STUDY_STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m runners.bench_envs
	$(PY) -m runners.bench_models
	$(PY) -m runners.bench_agent

clean:
	rm -rf $(VENV) runs checkpoints outputs
