#!/usr/bin/env bash
# The main job: set up the venv (first time only), then run the end-to-end demo:
# embedded service -> starter pack -> SmolLM2 atoms -> partition -> dictionary -> answers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec pace demo "$@"
