#!/usr/bin/env bash
# Create .venv (if missing) and install the gateway with its dev extras into it.
# Idempotent (reinstalls only when pyproject.toml changes); used by scripts/demo.sh
# and scripts/test.sh. The pip log goes to .venv/install.log and is shown on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing the gateway and its dependencies into .venv (first run only)..."
  if ! {
    .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
      .venv/bin/python -m pip install --disable-pip-version-check -e ".[dev]"
  } >.venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    echo "install failed; full log in .venv/install.log" >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
