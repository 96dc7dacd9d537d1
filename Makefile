# The habits, one command each. Every target sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/dbos_tests

.PHONY: demo test test-postgres test-sqlite test-matrix test-package lint format

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python manage.py rundemo

test: lint test-postgres test-sqlite test-matrix test-package

test-postgres: $(VENV)/.installed
	scripts/ensure-postgres.sh
	scripts/install-pgbouncer.sh
	DATABASE_URL=$(PG_TEST_URL) $(VENV)/bin/python -m pytest

test-sqlite: $(VENV)/.installed
	env -u DATABASE_URL $(VENV)/bin/python -m pytest

# The whole suite again under Django 6: Python 3.12 on PostgreSQL, Python 3.13 on SQLite.
test-matrix:
	scripts/test-matrix.sh -q

# The built wheel and sdist: twine's checks, then the wheel in a fresh venv and a new project.
test-package: $(VENV)/.installed
	scripts/check-package.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python manage.py makemigrations --check --dry-run django_dbos

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
