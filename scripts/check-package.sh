#!/usr/bin/env bash
# Build the sdist and wheel, check them with twine, then install the wheel into a fresh venv,
# as a user would, and use it in a new `startproject` project: migrate, run a workflow in the
# web process, run a queued one on `rundbosworker`, open the admin's dashboard.
#   scripts/check-package.sh            (uses .venv for build and twine)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'kill "${WORKER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

rm -rf dist
.venv/bin/python -m build --sdist --wheel --outdir dist . >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log"; exit 1; }
.venv/bin/twine check --strict dist/*
unzip -l dist/*.whl | grep -q "django_dbos/templates/admin/django_dbos/dashboard.html" \
  || { echo "check-package: the wheel lacks the admin templates" >&2; exit 1; }
unzip -l dist/*.whl | grep -q "licenses/LICENSE" \
  || { echo "check-package: the wheel lacks the LICENSE" >&2; exit 1; }

python3 -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
quiet_pip() {  # pip's warnings about a missing extra index on some machines are noise
  "$PY" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
quiet_pip --upgrade pip
quiet_pip "$(ls "$ROOT"/dist/*.whl)[binary]"

cd "$WORK"
"$WORK/venv/bin/django-admin" startproject smoke
cd smoke
mkdir orders
touch orders/__init__.py
cat > orders/workflows.py <<'PY'
from django_dbos import DBOS, Queue

orders = Queue("orders")


@DBOS.step()
def double(number: int) -> int:
    return 2 * number


@DBOS.workflow()
def total(number: int) -> int:
    return double(number) + 1
PY
cat >> smoke/settings.py <<'PY'

INSTALLED_APPS += ["django_dbos", "orders"]
ALLOWED_HOSTS = ["testserver"]
DBOS = {"APP_NAME": "smoke", "EXECUTOR_TIMEOUT_SECONDS": 10}
PY
"$PY" manage.py migrate --verbosity 0
"$PY" manage.py check
"$PY" manage.py makemigrations --check --dry-run django_dbos

"$PY" manage.py rundbosworker --queue orders >"$WORK/worker.log" 2>&1 &
WORKER=$!
"$PY" manage.py shell -c '
from django.contrib.auth.models import User
from django.test import Client
from django_dbos import DBOS
from orders.workflows import orders, total

assert total(20) == 41, "a workflow run in the web process"
handle = orders.enqueue(total, 1)
assert handle.get_result() == 3, "a workflow run by rundbosworker"
assert DBOS.get_workflow_status(handle.workflow_id).status == "SUCCESS"
user = User.objects.create_superuser("admin", "admin@example.com", "pw")
client = Client()
client.force_login(user)
page = client.get("/admin/django_dbos/workflowstatus/dashboard/")
assert page.status_code == 200 and b"orders" in page.content, page.status_code
print("check-package: installed wheel ran workflows in the web process and on a worker")
'
kill -TERM "$WORKER"
wait "$WORKER"
WORKER=
