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

.PHONY: install lint format typecheck pytest pytest-sdk-next test demo clean bench audit

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

# The suite against the next singer-sdk (the newest 0.55 pre-release), in a venv of its own,
# so the upgrade is a one-line change when it ships. pip warns that the tap's pin
# (~=0.54.9) is not met in that venv: that is the point of it. Left out there:
# - the end-to-end tests (marked in tests/conftest.py): Meltano and the built wheel run
#   the tap from venvs of their own, which keep the pinned SDK;
# - two checks of files generated from the SDK: 0.55 advertises the start-date capability
#   (meltano.yml) and adds emit_activate_version_messages to the README's settings table.
#   Moving to 0.55 means `python tools/readme.py`, the capability in meltano.yml and
#   plugins/extractors/tap-pipedrive.yml, and dropping these two deselects.
SDK_NEXT := 0.55.0b7
SDK_NEXT_VENV := .venv-sdk-next
SDK_NEXT_PYTEST_ARGS ?= -m 'not end_to_end' \
	--deselect tests/test_docs.py::test_readme_generated_sections_are_current \
	--deselect tests/test_docs.py::test_meltano_capabilities_match_the_tap

$(SDK_NEXT_VENV)/.installed-$(SDK_NEXT): pyproject.toml
	test -x $(SDK_NEXT_VENV)/bin/python || $(PYTHON) -m venv $(SDK_NEXT_VENV)
	$(SDK_NEXT_VENV)/bin/pip install --quiet --upgrade pip
	$(SDK_NEXT_VENV)/bin/pip install --quiet -e '.[dev]'
	$(SDK_NEXT_VENV)/bin/pip install --quiet 'singer-sdk[msgspec]==$(SDK_NEXT)'
	$(SDK_NEXT_VENV)/bin/python -c 'import importlib.metadata as m; \
		v = m.version("singer-sdk"); assert v == "$(SDK_NEXT)", v'
	touch $@

pytest-sdk-next: $(SDK_NEXT_VENV)/.installed-$(SDK_NEXT) install
	$(SDK_NEXT_VENV)/bin/mypy --strict --enable-error-code explicit-override tap_pipedrive
	MELTANO_BIN=$(CURDIR)/$(MELTANO) $(SDK_NEXT_VENV)/bin/pytest $(SDK_NEXT_PYTEST_ARGS) $(PYTEST_ARGS)

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
