# CareBridge: the one-word entry points. The same commands run locally and in CI (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test bench lint format clean

# Create the virtualenv and install the project with test and dev extras, pinned by
# constraints.txt so CI is reproducible. Re-runs when pyproject.toml or the pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test,dev]"
	@touch $(STAMP)

install: $(STAMP)

## make run: the whole system on this machine (Tansu, Redis, four services on SQLite under .data/)
run: install
	$(VENV)/bin/carebridge up

## make test: the whole suite against real Tansu, Redis, SQLite and PostgreSQL
test: install
	$(PY) -m pytest

## make bench: benchmarks against a stack they start themselves; writes bench/results.json
bench: install
	$(PY) -m bench.run

## make lint: ruff format check, ruff check, mypy
lint: install
	$(VENV)/bin/ruff format --check shared services tests bench
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/mypy shared services

format: install
	$(VENV)/bin/ruff format shared services tests bench
	$(VENV)/bin/ruff check --fix shared services tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
