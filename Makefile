# tornado-kit developer entry points. Every target sets up its own virtual
# environment, so `make demo` and `make test` work on a fresh machine that has
# only python3 and make.

PYTHON ?= python3
VENV ?= .venv
# Pin another Tornado minor version with e.g.
# `make pytest VENV=.venv-tornado62 TORNADO_SPEC='tornado>=6.2,<6.3'` (what .ci/run does).
TORNADO_SPEC ?=
PORT ?= 8888
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# With TORNADO_SPEC, the venv records the pin it was installed with as a file
# (.pin-tornado__6.2__6.3): asking for another pin in the same VENV reinstalls;
# without TORNADO_SPEC, whatever Tornado the venv has is used.
PIN := $(if $(TORNADO_SPEC),$(VENV)/.pin-$(shell printf '%s' '$(TORNADO_SPEC)' | tr -c 'A-Za-z0-9.' '_'))

.PHONY: venv demo test lint typecheck docs docs-inventories pytest bench clean

venv: $(STAMP)

ifneq ($(PIN),)
$(PIN):
	@:
endif

# Tornado is installed in the same pip run as the project, so that the pin
# and the project's own `tornado` requirement are resolved together; the
# check after it fails when the installed Tornado is not the one asked for.
$(STAMP): pyproject.toml $(PIN)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]' $(if $(TORNADO_SPEC),'$(TORNADO_SPEC)')
	$(BIN)/python -c 'import sys, tornado; from packaging.specifiers import SpecifierSet; \
	spec = SpecifierSet(sys.argv[1].removeprefix("tornado")); \
	print("venv $(VENV): Tornado", tornado.version, "for", sys.argv[1] or "the latest"); \
	sys.exit(tornado.version not in spec)' '$(TORNADO_SPEC)'
	rm -f $(VENV)/.pin-*
	$(if $(PIN),touch $(PIN))
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
