# invoicesync — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export INVOICESYNC_HOME ?= $(CURDIR)/.invoicesync
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install test lint demo dev bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

## test: the whole test suite (unit, sandbox over loopback, Dagster assets)
test: install
	scripts/ensure-test-tools.sh
	$(BIN)/pytest -n 2 --dist loadfile -q

## lint: ruff, formatting, and both Dagster definition checks
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/dg check defs

## demo: seed the sandbox, run the pipeline for the seeded days, print a summary
## (DEMO_ARGS="--days 3 --invoices-per-day 6" for a smaller one)
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m invoicesync_dagster.demo $(DEMO_ARGS)

## dev: the Dagster UI on http://127.0.0.1:3000 against the sandbox (the demo's data if any)
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m invoicesync_dagster.sandbox.dagster_dev

## bench: the ingestion and documents benchmarks (print figures)
bench: install
	$(BIN)/python benchmarks/ingest.py $(INGEST_ARGS)
	$(BIN)/python benchmarks/documents.py --repeat 3 $(DOCUMENTS_ARGS)

clean:
	rm -rf $(INVOICESYNC_HOME) $(DAGSTER_HOME) .pytest_cache .ruff_cache
