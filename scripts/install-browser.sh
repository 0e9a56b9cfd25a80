#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (and CJK fonts) for the audit
# report's browser test: tests/report/test_report_browser.py opens the report
# in it. CI runs this from scripts/test.sh; elsewhere run it once by hand
# (the test skips, saying so, while chromium is absent).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
command -v chromium
