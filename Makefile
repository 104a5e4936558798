# breastdx: the two quick-start commands are `make run` and `make test`.
# Both create (or reuse) the virtual environment in .venv, installing through constraints.txt,
# which pins the CPU build of torch (an unpinned torch pulls several GB of CUDA packages).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The data root: --data-dir, else $BREASTDX_DATA, else the per-user cache. Tests use ../shared/data.
BREASTDX_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: venv run test test-all clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

## Main job: train and evaluate the WDBC cytology models (data ship inside scikit-learn).
run: venv
	$(VENV)/bin/breastdx train wdbc

## The test suite (fast; slow tests are marked and left out).
test: venv
	BREASTDX_DATA=$(BREASTDX_DATA) $(PY) -m pytest

## Every test, the slow ones too.
test-all: venv
	BREASTDX_DATA=$(BREASTDX_DATA) $(PY) -m pytest -m ""

clean-venv:
	rm -rf $(VENV)
