# The two commands of the README: `make demo` and `make test`. Each creates or refreshes .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.farmplug-installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=
MUTANTS_ARGS ?=

.PHONY: demo test mutants venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned so pip takes the local CPU wheel instead of GBs of CUDA packages.
	$(PY) -m pip install --quiet -e ".[blender,torch,models,dev,bench,opencue,openjd]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/farmplug demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) scripts/lint_imports.py
	$(PY) -m pytest $(PYTEST_ARGS)

# By hand, not in CI: each targeted mutant (tests/mutants.yaml) in a temporary copy, with the tests that must kill it.
mutants: $(STAMP)
	$(PY) scripts/mutants.py $(MUTANTS_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
