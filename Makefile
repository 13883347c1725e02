# The commands the README gives. Each one creates .venv first if it is missing or older than
# requirements.txt (pinned packages + a registered Jupyter kernel), so a fresh clone needs only
# Python 3.10+ (3.11 recommended), git and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
KERNEL := pytorch-large-image-data
# The notebooks run in a fresh kernel of this environment under nbval; outputs are compared strictly.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900

.PHONY: help setup run test unit nbtest lab refresh skeleton bench clean

help:
	@echo "make run       execute every notebook headless (copies in outputs/notebooks/) and print a summary"
	@echo "make test      unit tests + every notebook under nbval (what CI runs)"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make refresh   re-execute the notebooks in place to refresh their committed outputs"
	@echo "make skeleton  rewrite the notebooks' header/Setup cells and the README table (tools/nbskeleton.py)"
	@echo "make bench     the speed and memory benchmarks (figures for docs/benchmarks.md)"
	@echo "make unit      unit tests only;  make clean  remove outputs/ (keeps .venv)"

$(READY): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "Python 3.10+ is needed (3.11 recommended); set PYTHON=python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "Python ($(KERNEL))"
	touch $(READY)

setup: $(READY)

run: $(READY)
	$(PY) tools/run_notebooks.py

# The committed outputs show the quick configuration, so nbval runs that one on any machine.
test: $(READY)
	FACES_CONFIG=quick $(PY) -m pytest -q $(NBVAL) tests notebooks

unit: $(READY)
	$(PY) -m pytest -q tests

nbtest: $(READY)
	FACES_CONFIG=quick $(PY) -m pytest -q $(NBVAL) notebooks

lab: $(READY)
	$(VENV)/bin/jupyter lab notebooks/

refresh: $(READY)
	$(PY) tools/nbskeleton.py
	FACES_CONFIG=quick $(PY) tools/run_notebooks.py --inplace

skeleton: $(READY)
	$(PY) tools/nbskeleton.py

bench: $(READY)
	$(PY) -m helpers.bench memory
	$(PY) -m helpers.bench speed

clean:
	rm -rf outputs .pytest_cache
