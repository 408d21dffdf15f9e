# Vitamin: `make run` serves everything on this machine; `make test` runs the whole suite.
# Only Python 3.11+ is needed; both targets create .venv and install into it.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
# The Delta Sharing connector pins pyarrow and requests below ours: it gets a venv of its own,
# inside .venv, that the live sharing tests and the benchmark run as a subprocess.
SHARING_VENV := $(VENV)/sharing-client
SHARING_STAMP := $(SHARING_VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: run test test-sqlite test-postgres bench lint screenshots messages clean-data help

help:
	@echo "make run    - install, migrate, load demo data, serve portal+API, worker and beat on :$${PORT:-8000}"
	@echo "make test   - run the whole test suite (SQLite; also PostgreSQL when VITAMIN_TEST_POSTGRES is set)"
	@echo "make bench  - run the benchmarks (ratios against raw baselines); rewrites docs/benchmarks.md"
	@echo "make lint   - ruff"
	@echo "make screenshots - photograph the portal's main pages into docs/images/portal/ (headless Chromium)"
	@echo "make messages - extract the portal's marked strings into platform/locale (zh_Hans) and compile it"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Vitamin needs Python 3.11 or newer on PATH (set PYTHON=...)."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The partners' example programs (examples/) need pandas and matplotlib: installed too, so that after
# `make run` they run with .venv/bin/python against the demo server.
$(RUNTIME_STAMP): requirements.txt examples/requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt -r examples/requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt examples/requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

$(SHARING_STAMP): requirements-sharing-client.txt | $(BIN)/python
	$(BIN)/python -m venv --clear $(SHARING_VENV)
	$(SHARING_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SHARING_VENV)/bin/python -m pip install --quiet -r requirements-sharing-client.txt
	touch $@

run: $(RUNTIME_STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py run

# The SQLite pass runs everything. With VITAMIN_TEST_POSTGRES=postgres://.../db the
# tests that use the Django database run again on PostgreSQL.
test: $(DEV_STAMP) $(SHARING_STAMP)
	env -u VITAMIN_TEST_POSTGRES $(PYTEST) $(PYTEST_ARGS)
	@if [ -n "$$VITAMIN_TEST_POSTGRES" ]; then \
		echo "--- PostgreSQL pass ($$VITAMIN_TEST_POSTGRES)"; \
		$(PYTEST) $(PYTEST_ARGS); \
	fi

bench: $(DEV_STAMP) $(SHARING_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The portal's main pages, photographed by the browser test that checks them (tests/portal/test_screenshots.py).
screenshots: $(DEV_STAMP)
	VITAMIN_SCREENSHOTS_DIR=docs/images/portal $(PYTEST) tests/portal/test_screenshots.py -q

# The portal's translations (docs/portal.md, "Languages"): new and changed strings land in the .po untranslated
# (tests/portal/test_i18n.py fails until they are translated); both the .po and the compiled .mo are committed.
# Run from platform/ so that only the project's own sources are scanned. Needs GNU gettext (xgettext, msgfmt).
messages: $(DEV_STAMP)
	cd platform && ../$(BIN)/python ../manage.py makemessages -l zh_Hans --add-location=file --no-obsolete
	cd platform && ../$(BIN)/python ../manage.py compilemessages -l zh_Hans

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
