# Omnify developer entry points. The README's quick start is `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test test-sqlite test-postgres lint typecheck check validate-deploy clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

up: install  ## run the product on the embedded default (SQLite), seeded with demo data
	$(BIN)/omnify up

test: install  ## the whole suite on SQLite, then on PostgreSQL
	bash scripts/test.sh

test-sqlite: install
	bash scripts/test.sh sqlite

test-postgres: install
	bash scripts/test.sh postgres

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .omnify .pytest_cache .mypy_cache .ruff_cache
