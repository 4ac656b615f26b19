# tornado-kit developer entry points. Every target sets up its own virtual
# environment, so `make demo` and `make test` work on a fresh machine that has
# only python3 and make.

PYTHON ?= python3
VENV ?= .venv
# Pin another Tornado minor version with e.g. `make test TORNADO_SPEC='tornado>=6.5,<6.6' VENV=.venv-65`.
TORNADO_SPEC ?=
PORT ?= 8888
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck docs docs-inventories pytest bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]' $(if $(TORNADO_SPEC),'$(TORNADO_SPEC)')
	touch $(STAMP)

## The example server (http://localhost:$(PORT)/).
demo: venv
	$(BIN)/python -m examples.reference_app --port $(PORT)

## The whole test suite: lint, format, types, docs build, then pytest with coverage.
test: lint typecheck docs pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy --strict tornado_kit

## The Sphinx site into $(VENV)/site: a fresh build, nitpicky, every warning an error.
docs: venv
	$(BIN)/python -m sphinx -b html -E -a -n -W --keep-going -q -d $(VENV)/doctrees docs $(VENV)/site

## Remake docs/_inventories (Tornado's from its sdist, Python's from Debian's python3-doc).
docs-inventories: venv
	$(BIN)/python docs/_inventories/make_inventories.py

pytest: venv
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/http_stack.py

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* site
