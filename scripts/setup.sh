#!/usr/bin/env bash
# Set up the zoo: .venv when absent, the CPU torch wheel when no torch is present, then the
# package itself (editable), with the extras named in $1 (e.g. "test" or "test,bench").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
# a bare torch requirement would pull a multi-GB CUDA build: take the CPU wheel first
python -c "import torch" 2>/dev/null || python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
