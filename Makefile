# `make reproduce` runs every notebook (the main job); `make test` runs the test suite.
# Both set up the virtual environment $(VENV) first when it is missing or stale.
#
#   make reproduce                 # SCALE=cpu: the whole job on a laptop CPU
#   make reproduce SCALE=smoke     # seconds per notebook
#   make reproduce SCALE=paper     # the paper's datasets and sizes; meant for a GPU
#   make reproduce NOTEBOOKS="03 05"   # only some notebooks (stem, number prefix or path)
#   make test                      # library tests + every notebook under nbval at smoke scale
#   make test-slurm                # tests/test_slurm.py on a one-node SLURM cluster on this machine

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
SCALE ?= cpu
NOTEBOOKS ?=

# Environment of the test run: notebooks at smoke scale, no GUI backend, no progress bars.
TEST_ENV = REPRODUCE_SCALE=smoke MPLBACKEND=agg TQDM_DISABLE=1

.PHONY: all install reproduce test list clean-results

all: reproduce

install: $(VENV)/.installed

# The stamp is rebuilt only when pyproject.toml changes, so later calls cost nothing.
# torch is installed first, and only when the environment has none: any torch>=2.2 works;
# 2.14.1 / torchvision 0.29.1 are the releases this project is developed with (where a
# local wheel cache holds them pip takes them from disk, elsewhere from PyPI).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || \
		$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

reproduce: $(VENV)/.installed
	$(PY) -m reproduce run --scale $(SCALE) $(NOTEBOOKS)

list: $(VENV)/.installed
	$(PY) -m reproduce list

# One pytest command, so the output ends with pytest's summary line.
# --nbval-lax collects the notebooks; .py test files are collected as usual.
test: $(VENV)/.installed
	$(TEST_ENV) $(PY) -m pytest --nbval-lax --nbval-current-env tests notebooks

# The SLURM integration tests: a one-node cluster on this machine (tools/slurm-local; `start
# --install` apt-installs slurm-wlm and munge when missing, so run as root), the tests marked
# `slurm` against it through submitit, and the cluster stopped again even when a test fails.
# REPRODUCE_REQUIRE_SLURM=1 makes "no cluster" a failure instead of a skip.
.PHONY: test-slurm
test-slurm: $(VENV)/.installed
	$(PY) -c "import submitit" 2>/dev/null || $(PY) -m pip install --quiet submitit
	tools/slurm-local start --install; status=$$?; \
	if [ $$status = 0 ]; then eval "$$(tools/slurm-local env)" && \
		REPRODUCE_REQUIRE_SLURM=1 $(TEST_ENV) $(PY) -m pytest -m slurm tests/test_slurm.py -v || status=$$?; fi; \
	tools/slurm-local stop; exit $$status

clean-results:
	rm -rf results/
