# Omnify developer entry points. The README's quick start is `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-runtime up test test-sqlite test-postgres lint typecheck bandit bench-gate reliability web-scan check validate-deploy clean

# What running the product needs (`make up`): no test, lint or browser tooling.
$(BIN)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# Everything for development and the test suite (`make test`); includes the runtime.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(BIN)/.runtime

install: $(BIN)/.installed

install-runtime: $(BIN)/.runtime

up: install-runtime  ## run the product on the embedded default (SQLite), seeded with demo data
	$(BIN)/omnify up

test: install  ## the whole suite on SQLite, then on PostgreSQL
	bash scripts/install-test-tools.sh
	bash scripts/test.sh

test-sqlite: install
	bash scripts/test.sh sqlite

test-postgres: install
	bash scripts/test.sh postgres

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

bandit: install  ## security lint: medium severity and confidence and up fail (the CI gate)
	$(BIN)/bandit -q -r src -ll -ii

bench-gate: install  ## each bench's smoke run vs a baseline commit measured in the same run (bench/gate.py)
	$(BIN)/python bench/gate.py

reliability: install  ## run the fault-injection tests, regenerate docs/reliability.md from their figures
	bash scripts/install-test-tools.sh
	$(BIN)/python scripts/reliability-report.py

web-scan: install  ## Wapiti's active and passive scan of `omnify up` (web app and API); fails on a high finding or a 5xx
	$(BIN)/python bench/web_scan.py --quick

check: lint typecheck test

clean:
	rm -rf $(VENV) .omnify .pytest_cache .mypy_cache .ruff_cache
