#!/usr/bin/env bash
# Install (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${CI:-}" = "true" ]; then
  bash scripts/install-browser.sh   # the audit report is checked in real headless Chromium
fi
# Two worker processes (pytest-xdist): most tests wait on sockets, subprocesses and
# fsyncs, so two workers halve the run even on two cores. GATEWAY_TEST_WORKERS=0
# runs everything in this one process; any other number sets the worker count.
exec .venv/bin/python -m pytest -q -n "${GATEWAY_TEST_WORKERS:-2}" --dist loadgroup "$@"
