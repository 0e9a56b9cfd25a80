#!/usr/bin/env bash
# Install (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${CI:-}" = "true" ]; then
  bash scripts/install-browser.sh   # the audit report is checked in real headless Chromium
fi
exec .venv/bin/python -m pytest -q "$@"
