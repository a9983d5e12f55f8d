# `make reproduce` runs every notebook (the main job); `make test` runs the test suite.
# Both set up the virtual environment $(VENV) first when it is missing or stale.
#
#   make reproduce                 # SCALE=cpu: the whole job on a laptop CPU
#   make reproduce SCALE=smoke     # seconds per notebook
#   make reproduce SCALE=paper     # the paper's datasets and sizes; meant for a GPU
#   make reproduce NOTEBOOKS="03 05"   # only some notebooks (stem, number prefix or path)
#   make reproduce SCALE=long NOTEBOOKS="05 06"   # claims 4 and 5 at the paper's optimiser steps
#   make reproduce JOBS=4          # train with 4 processes side by side (default: one per core)
#   make compare                   # what a fresh `make reproduce` changed against the committed figures
#   make test                      # library tests + every notebook under nbval at smoke scale
#   make test-slurm                # tests/test_slurm.py on a one-node SLURM cluster on this machine
#   make test-real-data            # tests/test_real_data.py and a short probe run: the real Fashion-MNIST (apt package)
#   make probe-data                # data/FashionMNIST/raw for `python -m reproduce probe` (claim 4 on a lent GPU)
#   make data DATASETS="mnist svhn"    # download the paper's datasets into $REPRODUCE_DATA (default: all five)
#   make TORCH=cpu test            # on a machine without a GPU: install torch/torchvision from
#                                  # PyTorch's CPU wheel index instead of PyPI's CUDA build (a
#                                  # fraction of the size); takes effect when .venv has no torch yet
#   make binder-lock               # regenerate the fully pinned binder/requirements.txt
#   make browser-check             # open a notebook in JupyterLab in headless Chromium, run it at
#                                  # smoke scale, save screenshots (results/browser-check/)

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
SCALE ?= cpu
NOTEBOOKS ?=
# TORCH= (empty): torch from PyPI (the CUDA build on Linux); TORCH=cpu: PyTorch's CPU wheel index.
TORCH ?=
TORCH_INDEX_cpu = --index-url https://download.pytorch.org/whl/cpu
TORCH_PINS = torch==2.14.1 torchvision==0.29.1
ifneq ($(filter-out cpu,$(TORCH)),)
$(error unknown TORCH=$(TORCH); valid values are cpu or empty (the default build from PyPI))
endif

# Every Python that make starts may write bytecode (see the install step below).
unexport PYTHONDONTWRITEBYTECODE

# Environment of the test run: notebooks at smoke scale, no GUI backend, no progress bars.
TEST_ENV = REPRODUCE_SCALE=smoke MPLBACKEND=agg TQDM_DISABLE=1

.PHONY: all install reproduce compare test list data clean-results binder-lock browser-check

all: reproduce

install: $(VENV)/.installed

# The stamp is rebuilt only when pyproject.toml changes, so later calls cost nothing.
# The packages are installed by uv (installed into the environment by pip first): it unpacks the
# 6 GB of torch's CUDA build in parallel, about 15 s here against pip's 2 to 3 minutes, which
# were half of `make test` on a fresh clone. uv does not read pip's configuration, so
# tools/uv_sources.py hands it pip's sources (a local wheel folder, extra indexes, constraints;
# nothing where pip has none). Neither uv nor pip byte-compiles every installed file (17,300 with
# the models extra, about a minute of CPU here, most of it code nothing imports): the last step,
# tools/warm_bytecode.py, imports the package and what its notebooks and tests use once and writes
# the bytecode of those modules (about 4,600) even where PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines, where every process would otherwise compile every module it imports again;
# the tests start hundreds). Processes run by make write the bytecode of anything else on first
# import: the variable is unexported below.
# torch is installed first, and only when the environment has none: any torch>=2.2 works;
# 2.14.1 / torchvision 0.29.1 are the releases this project is developed with (where a
# local wheel cache holds them they come from disk, elsewhere from PyPI).
# Where uv cannot be installed (no index offers it), pip installs everything, as before, after
# upgrading itself (with uv it is not upgraded: uv does the installing; 2-3 s of the set-up).
INSTALL = $(PY) tools/uv_sources.py install
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv || { $(PY) -m pip install --quiet --upgrade pip; \
		echo "uv could not be installed: pip installs the packages"; }
	$(PY) -c "import torch, torchvision" 2>/dev/null || \
		$(INSTALL) $(TORCH_INDEX_$(TORCH)) $(TORCH_PINS)
	$(INSTALL) -e '.[test,models]'
	$(PY) tools/warm_bytecode.py
	touch $@

# On the CPU scales the runs are first trained by JOBS one-thread processes side by side (default:
# one per core; the pinned numerics make every process compute with one thread), then the
# notebooks execute and collect them. On the GPU scales JOBS defaults to 1 (the notebooks train).
ifneq ($(filter $(SCALE),smoke cpu long),)
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
else
JOBS ?= 1
endif

reproduce: $(VENV)/.installed
	$(PY) -m reproduce run --scale $(SCALE) --jobs $(JOBS) $(NOTEBOOKS)

compare: $(VENV)/.installed
	$(PY) -m reproduce compare --scale $(SCALE)

list: $(VENV)/.installed
	$(PY) -m reproduce list

# Resumable and idempotent: files already there (and verifying) are not downloaded again.
DATASETS ?=
data: $(VENV)/.installed
	$(PY) -m reproduce data fetch $(DATASETS)

# The layering of ARCHITECTURE.md first (import-linter's contract in pyproject.toml), then the
# library's tests with pytest-xdist, one worker per core (every test computes with one pinned
# thread; --dist loadscope keeps each test module on one worker) and, beside them, the notebooks
# under nbval at smoke scale, one after the other in one process (they share results/smoke, and a
# worker of xdist tears a notebook's kernel down between its cells). The notebooks' pass is one
# process on one core: alone it leaves the other core idle for its whole length, beside the
# library's tests it fills the gaps. Its output is kept in $(NBVAL_LOG) and printed after the
# library's, so the output ends with pytest's summary line of the notebooks; the target fails when
# either pass fails. --nbval-lax collects the notebooks. The library's pass lists its 15 slowest
# tests (the 5-minute budget of make test is spent there).
# The library's pass runs without the nbval plugin (-p no:nbval): loading it imports nbformat, whose
# jsonschema builds rfc3987-syntax's URI grammar at import, about 3 CPU-s in each pytest process
# (measured with --collect-only of one small test file: 6.3 against 3.3 CPU-s).
NBVAL_LOG = results/nbval-smoke.log
test: $(VENV)/.installed
	$(VENV)/bin/lint-imports
	@mkdir -p $(dir $(NBVAL_LOG))
	@$(TEST_ENV) $(PY) -m pytest --nbval-lax --nbval-current-env notebooks > $(NBVAL_LOG) 2>&1 & nbval=$$!; \
	echo "notebooks under nbval beside the library's tests (output: $(NBVAL_LOG), printed at the end)"; \
	$(TEST_ENV) $(PY) -m pytest -p no:nbval -n auto --dist loadscope --durations=15 tests; library=$$?; \
	wait $$nbval; notebooks=$$?; \
	echo; echo "== notebooks (nbval, smoke) =="; cat $(NBVAL_LOG); \
	test $$library = 0 && test $$notebooks = 0

# The heavy tests marked `integration` (not part of `make test`, where they show as skipped): the
# sweep's jobs checked against notebooks 03 and 04 executed by papermill (nbval executes them in
# `make test` too), torch.compile's reduce-overhead step with a cold inductor cache, and the
# notebooks' install cell in fresh virtual environments. About two CPU-minutes.
.PHONY: test-integration
test-integration: $(VENV)/.installed
	$(TEST_ENV) $(PY) -m pytest -m integration -v -rA --durations=0 tests

# The SLURM integration tests: a one-node cluster on this machine (tools/slurm-local; `start
# --install` apt-installs slurm-wlm and munge when missing, so run as root), the tests marked
# `slurm` against it through submitit (among them a sweep of notebook 03's runs with one job
# cancelled and one preempted mid-run; a few minutes), and the cluster stopped again even when a
# test fails. REPRODUCE_REQUIRE_SLURM=1 makes "no cluster" a failure instead of a skip.
.PHONY: test-slurm
test-slurm: $(VENV)/.installed
	$(PY) -c "import submitit" 2>/dev/null || $(PY) -m pip install --quiet submitit
	tools/slurm-local start --install; status=$$?; \
	if [ $$status = 0 ]; then eval "$$(tools/slurm-local env)" && \
		REPRODUCE_REQUIRE_SLURM=1 $(TEST_ENV) $(PY) -m pytest -m slurm tests/test_slurm.py -v -rA --durations=0 || status=$$?; fi; \
	tools/slurm-local stop; exit $$status

# The real-data tests (not part of `make test`): the real Fashion-MNIST, 70,000 images, read as
# `fashion-mnist` from Debian's dataset-fashion-mnist package (apt-installed when
# /usr/share/datasets/fashion-mnist/ is missing, so run as root or with sudo), checksums verified
# (tests/test_real_data.py says which). REPRODUCE_REQUIRE_REAL_DATA=1 makes missing files a failure.
REAL_DATA = /usr/share/datasets/fashion-mnist
.PHONY: test-real-data probe-data
SUDO = $(if $(filter 0,$(shell id -u)),,sudo )
$(REAL_DATA):
	$(SUDO)apt-get update && $(SUDO)apt-get install -y dataset-fashion-mnist

# The real Fashion-MNIST: the loader's tests, then one short paper-shaped run through
# `python -m reproduce probe` (a residual-50 on 4,096 real images for 320 steps, every branch
# measured, then the lesion protocol) into a throw-away root: 5 min 17 s here (2 cores).
test-real-data: $(VENV)/.installed probe-data
	REPRODUCE_REQUIRE_REAL_DATA=1 $(TEST_ENV) $(PY) -m pytest -m real_data tests/test_real_data.py -v -rA
	rm -rf results/real-data-probe
	$(TEST_ENV) $(PY) -m reproduce probe --root results/real-data-probe --data-root $(PROBE_DATA) --no-verify \
		--device cpu --steps 320 --width 0.0625 --train-limit 4096 --draws 1

# data/FashionMNIST/raw: the four idx files of Debian's dataset-fashion-mnist, checked against
# Debian's MD5s (its .gz headers were rewritten, so not the published ones) and uncompressed: 55 MB,
# small enough to travel with a checkout to a lent GPU (the device tool's `carry`), for
#   python3 -m reproduce probe --no-verify --data-root data
PROBE_DATA = data
probe-data: | $(REAL_DATA)
	cd / && grep 'datasets/fashion-mnist/' /var/lib/dpkg/info/dataset-fashion-mnist.md5sums | md5sum --check --quiet
	mkdir -p $(PROBE_DATA)/FashionMNIST/raw
	for f in $(REAL_DATA)/*-ubyte.gz; do \
		gunzip -c $$f > $(PROBE_DATA)/FashionMNIST/raw/$$(basename $$f .gz).part && \
		mv $(PROBE_DATA)/FashionMNIST/raw/$$(basename $$f .gz).part $(PROBE_DATA)/FashionMNIST/raw/$$(basename $$f .gz); \
	done

clean-results:
	rm -rf results/

# binder/requirements.txt: every package Binder installs, pinned: pyproject.toml with its test
# and models extras, resolved by pip-compile (in a throwaway venv) for this Python, with torch/torchvision held
# at $(TORCH_PINS). Binder has no GPU, so the CUDA-only packages (nvidia-*, cuda-*, triton) are
# dropped and torch/torchvision pinned to the +cpu builds of PyTorch's CPU index, which depend on
# nothing else (their requirements are the CUDA build's minus those packages).
LOCK_VENV = $(VENV)/.binder-lock
binder-lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools
	printf '%s\n' $(TORCH_PINS) > $(LOCK_VENV)/torch-pins.txt
	$(LOCK_VENV)/bin/pip-compile --quiet --no-header --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra test --extra models --constraint $(LOCK_VENV)/torch-pins.txt \
		--output-file $(LOCK_VENV)/resolved.txt pyproject.toml
	{ printf '%s\n' '# Binder (repo2docker) installs exactly these versions; binder/postBuild then installs' \
		'# the repository itself with --no-deps. Regenerate with: make binder-lock' \
		"# Resolved by pip-compile for Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())') on Linux x86_64." \
		'--extra-index-url https://download.pytorch.org/whl/cpu'; \
	  awk '/^[a-zA-Z0-9]/ { skip = ($$0 ~ /^(nvidia-|cuda-|triton==)/) } !skip' $(LOCK_VENV)/resolved.txt | \
	  sed -E -e 's/^(torch|torchvision)==([0-9.]+)$$/\1==\2+cpu/' \
		-e 's|-c $(LOCK_VENV)/torch-pins.txt|TORCH_PINS of the Makefile|'; } > binder/requirements.txt
	rm -rf $(LOCK_VENV)

# JupyterLab on 127.0.0.1 from $(VENV), one notebook run in headless Chromium at smoke scale,
# screenshots under results/browser-check/ (needs Debian's `chromium`; see tools/browser-check).
BROWSER_NOTEBOOK ?= notebooks/00_quickstart.ipynb
browser-check: $(VENV)/.installed
	$(PY) tools/browser-check $(BROWSER_NOTEBOOK) --out results/browser-check
