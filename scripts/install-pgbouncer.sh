#!/usr/bin/env bash
# Install PgBouncer for tests/test_pgbouncer.py (which starts its own, on a free port): Debian's
# pgbouncer package. Idempotent: does nothing when it is there. The package's own service is not
# needed and is left stopped.
set -euo pipefail
if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
  echo "install-pgbouncer: $(/usr/sbin/pgbouncer --version 2>/dev/null | head -1 || echo pgbouncer) is installed."
  exit 0
fi
echo "install-pgbouncer: installing Debian's pgbouncer package..."
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer
echo "install-pgbouncer: installed $(/usr/sbin/pgbouncer --version | head -1)."
