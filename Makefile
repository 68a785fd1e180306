# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= cpu
STAMP   = $(VENV)/.linrepro-installed

.PHONY: reproduce test setup lab site clean-outputs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

## make reproduce: set up, then run every notebook of the cpu profile and build the site
reproduce: $(STAMP)
	$(VENV)/bin/linrepro reproduce --profile $(PROFILE)
	@echo "open outputs/site/index.html"

## make test: set up, then run the whole test suite (kernels under the Triton interpreter)
test: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

site: $(STAMP)
	$(VENV)/bin/linrepro site
