#!/usr/bin/env bash
# Set up the zoo: .venv when absent, the CPU torch wheel when no torch is present, then the
# package itself (editable), with the extras named in $1 (e.g. "test" or "test,bench").
# pip's output goes to .venv/setup.log and is shown only if a step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
log=.venv/setup.log
: > "$log"
step() {
  echo "+ $*" >> "$log"
  "$@" >> "$log" 2>&1 || { cat "$log"; echo "setup failed: $*" >&2; exit 1; }
}
step python -m pip install --disable-pip-version-check --upgrade pip
# a bare torch requirement would pull a multi-GB CUDA build: take the CPU wheel first
python -c "import torch" 2>/dev/null || step python -m pip install --disable-pip-version-check torch==2.13.0
step python -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}"
echo "zoo is set up in .venv (python $(python -c 'import platform; print(platform.python_version())'), torch $(python -c 'import torch; print(torch.__version__)'))"
