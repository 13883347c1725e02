# The commands the README gives. Each one creates .venv first if it is missing or older than
# requirements.txt (pinned packages + this clone's own Jupyter kernel), so a fresh clone needs only
# Python 3.10+ (3.11 recommended), git and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
# Colab's older torch/torchvision pair, rehearsed in a second environment (`make colab-check`), on
# Python 3.12 as Colab runs it where one is installed (else $(PYTHON)).
COLAB_VENV := .venv-colab
COLAB_READY := $(COLAB_VENV)/.ready
PYTHON_COLAB ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 $(PYTHON); do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1 && { echo $$p; break; }; done)
# Each environment holds a CUDA build of torch (the registry's regular wheels): about 6 GB for .venv
# and 7 GB for .venv-colab once installed, more while pip unpacks. Before creating one, check the
# disk, so a full disk gives a clear message instead of pip's OSError half-way through; pip keeps
# no second copy in its cache.
PIP_INSTALL = -m pip install --no-cache-dir
need_disk = @[ -x $(2)/bin/python ] || { free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
  [ "$$free" -ge $(1) ] || { echo "$(2) needs about $(1) GB of free disk, and $$free GB are free here:" \
  "free some (e.g. remove outputs/ or an environment you no longer use) and run make again"; exit 1; }; }
# The notebooks run in a fresh kernel of this environment under nbval; outputs are compared strictly.
# No cell timeout tighter than CI's own 90 minutes: a shared machine can be many times slower.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=5400
# Executed notebooks show one log line per epoch, not progress-bar frames.
QUIET := FACES_CONFIG=quick FACES_PROGRESS=0
# JupyterLab refuses to run as root (containers) unless told.
ALLOW_ROOT = $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help setup run test unit nbtest colab-check lab refresh skeleton bench clean

help:
	@echo "make run          execute every notebook headless (copies in outputs/notebooks/) and print a summary"
	@echo "make test         unit tests + every notebook under nbval (what CI runs)"
	@echo "make colab-check  Colab's older torch/torchvision: unit tests + every notebook in a rehearsed Colab"
	@echo "make lab          open JupyterLab at the repository root"
	@echo "make refresh      re-execute the notebooks in place to refresh their committed outputs"
	@echo "make skeleton     rewrite the notebooks' header/Setup cells and the README table (tools/nbskeleton.py),"
	@echo "                  then rebuild the Japanese editions in notebooks/ja/ (tools/nbtranslate.py)"
	@echo "make bench        the speed and memory benchmarks (figures for docs/benchmarks.md)"
	@echo "make unit         unit tests only;  make clean  remove outputs/ (keeps the environments)"

# The kernel is registered inside .venv (--sys-prefix) under the name the notebooks carry, so it is
# this clone's own and JupyterLab does not rewrite the notebooks' metadata on open.
$(READY): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "Python 3.10+ is needed (3.11 recommended); set PYTHON=python3.11"; exit 1; }
	$(call need_disk,8,$(VENV))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) --upgrade pip
	$(PY) $(PIP_INSTALL) -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"
	touch $(READY)

setup: $(READY)

run: $(READY)
	FACES_PROGRESS=0 $(PY) tools/keep_tracked.py -- $(PY) tools/run_notebooks.py

# The committed outputs show the quick configuration, so nbval runs that one on any machine.
test: $(READY)
	$(QUIET) $(PY) tools/keep_tracked.py -- $(PY) -m pytest -q $(NBVAL) tests notebooks

unit: $(READY)
	$(PY) -m pytest -q tests

nbtest: $(READY)
	$(QUIET) $(PY) tools/keep_tracked.py -- $(PY) -m pytest -q $(NBVAL) notebooks

$(COLAB_READY): tests/colab/requirements-colab.txt
	@test -n "$(PYTHON_COLAB)" || { echo "no Python 3.10+ found for the Colab rehearsal"; exit 1; }
	$(call need_disk,9,$(COLAB_VENV))
	test -x $(COLAB_VENV)/bin/python || $(PYTHON_COLAB) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python $(PIP_INSTALL) -q -r tests/colab/requirements-colab.txt
	touch $(COLAB_READY)

# Unit tests (but the one that checks the pins) and every notebook, top to bottom, in a rehearsed
# fresh Colab runtime, with the versions Colab ships (tests/colab/requirements-colab.txt).
colab-check: $(COLAB_READY)
	$(COLAB_VENV)/bin/python -m pytest -q -p no:cacheprovider tests -k "not installed_versions_match_the_pins"
	$(QUIET) $(COLAB_VENV)/bin/python tools/keep_tracked.py -- $(COLAB_VENV)/bin/python tools/colab_rehearsal.py

lab: $(READY)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

# The Japanese editions (notebooks/ja/) carry the English notebooks' code and outputs: rebuilt after both.
refresh: $(READY)
	$(PY) tools/nbskeleton.py
	$(QUIET) $(PY) tools/run_notebooks.py --inplace
	cp outputs/figures/prediction.png docs/prediction.png
	$(PY) tools/nbtranslate.py

skeleton: $(READY)
	$(PY) tools/nbskeleton.py
	$(PY) tools/nbtranslate.py

bench: $(READY)
	$(PY) -m helpers.lab.bench all --json outputs/bench/bench.json
	$(PY) -m helpers.lab.bench report --json outputs/bench/bench.json > outputs/bench/bench.md
	@echo "tables for docs/benchmarks.md: outputs/bench/bench.md"
	$(PY) -m helpers.shards write data_sample outputs/shards/data_sample --max-count 8 --quiet
	$(PY) -m helpers.shards bench data_sample outputs/shards/data_sample
	$(PY) -m helpers.shards bench data_sample outputs/shards/data_sample --cold

clean:
	rm -rf outputs .pytest_cache
