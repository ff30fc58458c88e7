#!/usr/bin/env bash
# The test command: its own venv, lint, types, then the test suite (which starts its
# own embedded PostgreSQL). Safe to run from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ruff check service sdk migrations cli tests bench
mypy service sdk migrations cli
pytest "$@"
