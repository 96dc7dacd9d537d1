#!/usr/bin/env bash
# The whole test suite under Django 6 on the newer Pythons, beside `make test-postgres` and
# `make test-sqlite` (Django 5.2 on Python 3.11):
#   Django 6.x, Python 3.12, PostgreSQL     (.venv-py3.12-django6)
#   Django 6.x, Python 3.13, SQLite         (.venv-py3.13-django6)
# Each pair runs on one database, to stay within CI's time; together with the 3.11 runs every
# Python and both Django versions meet both databases' code paths.
#   scripts/test-matrix.sh [pytest options...]
# Pythons come from pyenv (`pyenv install 3.12 3.13`). The PostgreSQL test database is separate
# from `make test-postgres`'s, so both can run at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${MATRIX_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/dbos_tests_matrix}

find_python() {  # find_python 3.12
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$root"/versions/"$1".*/bin/python "$(command -v "python$1" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "test-matrix: Python $1 not found (pyenv install $1)." >&2
  exit 1
}

venv_for() {  # venv_for 3.12: a venv with Django 6 and the dev extras, made once
  local venv=".venv-py$1-django6" python
  if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    python=$(find_python "$1")
    echo "test-matrix: creating $venv with $("$python" --version)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
    "$venv/bin/pip" install --quiet -e '.[dev]' 'django>=6,<7' 2> >(grep -v "^WARNING: Location" >&2)
    touch "$venv/.installed"
  fi
  echo "$venv"
}

describe() {
  "$1/bin/python" -c 'import django, sys; print(f"Django {django.__version__}, Python {sys.version.split()[0]}")'
}

venv=$(venv_for 3.12)
echo "test-matrix: $(describe "$venv"), PostgreSQL"
scripts/ensure-postgres.sh
scripts/install-pgbouncer.sh
DATABASE_URL=$PG_URL "$venv/bin/python" -m pytest "$@"

venv=$(venv_for 3.13)
echo "test-matrix: $(describe "$venv"), SQLite"
env -u DATABASE_URL "$venv/bin/python" -m pytest "$@"
