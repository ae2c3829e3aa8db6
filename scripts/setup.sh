#!/usr/bin/env bash
# Install loscat-hf (editable) into the active Python. Usage: bash scripts/setup.sh [EXTRAS]
# Where no torch is installed yet, the CPU wheel torch==2.13.0 goes in first, so that the unpinned
# torch requirement is already satisfied and pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
extras=${1:-}
if [ -n "$extras" ]; then
    "$PY" -m pip install -q -e ".[${extras}]"
else
    "$PY" -m pip install -q -e .
fi
