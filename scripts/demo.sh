#!/usr/bin/env bash
# Set up, then run the main job: Order-Preserving GFlowNets' embedded default (TB on the 2-D
# hypergrid, CPU, under two minutes). Extra arguments go to the recipe, e.g. --model.loss op_tb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
. .venv/bin/activate
python recipes/op_gfn.py fit "$@"
