# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= cpu
STAMP   = $(VENV)/.linrepro-installed
# where generated runs go (tests use their own temporary folders)
OUTPUTS ?= outputs

.PHONY: reproduce test test-fast lint format rehearse-device-check setup lab site clean-outputs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

## make reproduce: set up, then run every notebook of the cpu profile and build the site
reproduce: $(STAMP)
	$(VENV)/bin/linrepro reproduce --profile $(PROFILE)
	@echo "open $(OUTPUTS)/site/index.html"

## make test: set up, then run the whole test suite (kernels under the Triton interpreter)
test: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

## make test-fast: the edit-and-test loop, about a minute: everything not marked slow or notebook, 2 workers
test-fast: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q -n 2 -m "not slow and not notebook" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

## make lint: ruff (lint and format check) and mypy on the typed core
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy linrepro/attention linrepro/runner/params.py kernels

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make rehearse-device-check: scripts/device-check.sh --dry-run in a bare-image environment (CI runs it)
rehearse-device-check: $(STAMP)
	bash scripts/rehearse-device-check.sh $(PY)

## make lab: JupyterLab on the project root; .py notebooks open as notebooks; prints the URL to open
## (lab/lab.py; LAB_ARGS go to jupyter lab, e.g. LAB_ARGS="--no-browser --port 8899")
lab: $(STAMP)
	$(PY) lab/lab.py $(LAB_ARGS)

site: $(STAMP)
	$(VENV)/bin/linrepro site

## make clean-outputs: delete generated runs (keeps outputs/reference/, the recorded runs)
clean-outputs:
	find $(OUTPUTS) -mindepth 1 -maxdepth 1 ! -name reference ! -name .gitkeep -exec rm -rf {} +
