# Two commands matter: `make run` (the product with demo data) and `make test` (the whole suite).
# Both install what they need: a virtualenv with the project, and system packages when missing.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck format system-deps system-deps-run install clean

run: system-deps-run $(STAMP)
	$(BIN)/hejie db upgrade
	$(BIN)/hejie demo --if-empty
	@echo "Serving Hejie on http://$(HOST):$(PORT)  (Ctrl-C stops it)"
	$(BIN)/hejie serve --host $(HOST) --port $(PORT)

test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/audit_deps.py
	$(BIN)/pytest

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

system-deps:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages.sh test

system-deps-run:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages.sh run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
