#!/usr/bin/env bash
# Install the browser the browser tests drive: Debian's chromium package (Playwright's own
# browser download is not used). Idempotent: does nothing when /usr/bin/chromium is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "install-browser: /usr/bin/chromium is already installed ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))."
  exit 0
fi
echo "install-browser: installing Debian's chromium package..."
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)."
