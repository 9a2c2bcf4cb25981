# Developer entry points. `make test` is the command CI runs (see .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export MELTANO_PROJECT_ROOT := $(CURDIR)
# Keep pip's self-update nag out of every install log.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lint format typecheck pytest test demo clean bench audit

install: $(VENV)/.installed .meltano/.installed

# Stamp files make the installs re-run only when their inputs change.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(MELTANO_VENV)/.installed: requirements/meltano.txt
	test -x $(MELTANO_VENV)/bin/python || $(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/pip install --quiet -r requirements/meltano.txt
	touch $@

.meltano/.installed: meltano.yml pyproject.toml loaders/target-sqlite/pyproject.toml $(MELTANO_VENV)/.installed
	$(MELTANO) install
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The tap, the sandbox, the demo script, the test support modules and the embedded loader (a package
# of its own, so it is named by its directory).
# The tap itself is checked strictly, and every method that overrides one says so (@override).
TYPECHECK_PATHS := pipedrive_sandbox scripts tests/support loaders/target-sqlite/target_sqlite

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict --enable-error-code explicit-override tap_pipedrive
	$(VENV)/bin/mypy $(TYPECHECK_PATHS)

pytest: install
	MELTANO_BIN=$(CURDIR)/$(MELTANO) $(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# pip-audit over the installed .venv (see .ci/audit.py; CI runs it before the tests).
audit: $(VENV)/.installed
	$(PYTHON) .ci/audit.py

# The benchmark suite (docs/benchmarks.md); BENCH_ARGS=--quick for a short run.
bench: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)

demo: install
	MELTANO_BIN=$(CURDIR)/$(MELTANO) $(VENV)/bin/python scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf .meltano .demo output .pytest_cache .mypy_cache .ruff_cache
