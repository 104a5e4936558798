# breastdx: the two quick-start commands are `make run` and `make test`.
# Both create (or reuse) the virtual environment in .venv, installing through constraints.txt,
# which pins torch==2.13.0 (an unpinned torch pulls several GB of CUDA packages). pip takes the CPU build where the
# index offers it; from PyPI alone add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (README, Quick start).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The data root: --data-dir, else $BREASTDX_DATA, else the per-user cache. Tests use ../shared/data.
BREASTDX_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: venv run test test-all browser-deps postgres-deps clean-venv

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

## Debian's chromium for the web page's browser test (Playwright cannot download its own browser here).
## Installed only when /usr/bin/chromium is missing and we are root with apt-get; otherwise nothing is done
## and the browser test skips, saying why.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium; the browser test will be skipped"; \
	fi

## Debian's PostgreSQL server for tests/serve/test_postgres.py (each test run starts its own server in a temporary
## folder and stops it). Installed only when no initdb is found and we are root with apt-get; the cluster the package
## may start is stopped again, as the tests need only the programs.
postgres-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql (apt-get) for the PostgreSQL tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
			&& (command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read v c _; do \
				pg_ctlcluster "$$v" "$$c" stop 2>/dev/null || true; done; true)) \
			|| echo "could not install postgresql; the PostgreSQL tests will be skipped"; \
	fi

## The test suite (fast; slow tests are marked and left out).
test: venv browser-deps postgres-deps
	BREASTDX_DATA=$(BREASTDX_DATA) $(PY) -m pytest

## Every test, the slow ones too.
test-all: venv browser-deps
	BREASTDX_DATA=$(BREASTDX_DATA) $(PY) -m pytest -m ""

clean-venv:
	rm -rf $(VENV)
