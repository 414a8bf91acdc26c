#!/usr/bin/env bash
# Set up with the test extra, then run every test CI can run (not the slow learning tests, not
# the GPU ones). Extra arguments go to pytest, e.g. -m slow or tests/op_gfn.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test
. .venv/bin/activate
export OMP_NUM_THREADS=1
if [ $# -eq 0 ]; then set -- -m "not slow and not gpu"; fi
python -m pytest -q "$@"
