#!/usr/bin/env bash
# Install (first run only) and run the three-jurisdiction demo on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gateway demo "$@"
