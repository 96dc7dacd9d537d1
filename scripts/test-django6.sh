#!/usr/bin/env bash
# Run the tests under Django 6 (its built-in django.tasks) in .venv-django6, on SQLite and then
# PostgreSQL. By default the Django Tasks backend's tests; with --all, the whole suite.
#   scripts/test-django6.sh [--all] [pytest options...]
# The PostgreSQL test database is separate from `make test`'s, so both can run at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-django6
PG_URL=${DJANGO6_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/dbos_tests_django6}
TESTS=(tests/test_tasks.py)
if [ "${1:-}" = "--all" ]; then
  TESTS=()
  shift
fi

find_python() {
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$root"/versions/3.12*/bin/python "$root"/versions/3.13*/bin/python \
    "$(command -v python3.12 || true)" "$(command -v python3.13 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "test-django6: Django 6 needs Python 3.12 or 3.13; none found (pyenv install 3.12)." >&2
  exit 1
}

if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
  python=$(find_python)
  echo "test-django6: creating $VENV with $("$python" --version)"
  "$python" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e '.[dev]' 'django>=6,<7'
  touch "$VENV/.installed"
fi
echo "test-django6: Django $("$VENV/bin/python" -c 'import django; print(django.__version__)'), $("$VENV/bin/python" --version)"

env -u DATABASE_URL "$VENV/bin/python" -m pytest "${TESTS[@]}" "$@"
scripts/ensure-postgres.sh
DATABASE_URL=$PG_URL "$VENV/bin/python" -m pytest "${TESTS[@]}" "$@"
