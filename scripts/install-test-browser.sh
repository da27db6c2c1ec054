#!/usr/bin/env bash
# Headless Chromium and its matching driver for tests/report/test_browser.py, from Debian's
# `chromium` + `chromium-driver` packages (same version, so selenium never has to download a
# driver). A no-op when both are present; where they cannot be installed (no apt-get, not
# root, no mirror) it says so and exits 0: the browser test then skips, or fails when
# REPRO_REQUIRE_BROWSER=1.
set -uo pipefail

have_browser() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }

if have_browser; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: no apt-get here; install Chromium and chromedriver by hand for the browser test"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "note: not root, cannot apt-get install chromium chromium-driver; run as root or with sudo"
  exit 0
fi
# Try the current package lists first (fast); refresh them only if that fails.
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1)
if have_browser; then
  echo "installed $(/usr/bin/chromium --version 2>/dev/null) and its chromedriver"
else
  echo "note: chromium and chromium-driver could not be installed with apt-get"
fi
exit 0
