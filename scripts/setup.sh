#!/usr/bin/env bash
# Install loscat-hf (editable) into the active Python. Usage: bash scripts/setup.sh [EXTRAS]
# Every install goes through pip constraints from space/requirements.txt (`-c`): the development and CI
# installs get exactly the versions the Space pins, so the tests run on what the Space installs
# (tests/test_space.py checks it; docs/development.md, "Pinned versions"). pyproject.toml keeps lower bounds.
# Where no torch is installed yet, the pinned torch goes in first, alone, through the whole file: its
# --extra-index-url is PyTorch's CPU index, so pip never pulls a multi-GB CUDA build. The other packages are
# constrained by the pin lines only: with the index line pip would also ask the CPU index for each of them
# (16 minutes instead of 3 where that index is unreachable). A torch already installed at another version
# (your own CUDA build) is kept: its pin is left out of the constraints, with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PINS=space/requirements.txt
TORCH_PIN=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$PINS")
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # --no-deps: torch's own dependencies come with the next step, without the CPU index
    "$PY" -m pip install -q --no-deps -c "$PINS" "torch==${TORCH_PIN}"
    grep -v '^-' "$PINS" > "$constraints"
else
    have=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
    if [ "$have" = "$TORCH_PIN" ]; then
        grep -v '^-' "$PINS" > "$constraints"
    else
        echo "setup.sh: keeping the installed torch $have ($PINS pins $TORCH_PIN): tests/test_space.py's" \
             "pin check will fail for torch" >&2
        grep -v -e '^-' -e '^torch==' "$PINS" > "$constraints"
    fi
fi
extras=${1:-}
if [ -n "$extras" ]; then
    "$PY" -m pip install -q -c "$constraints" -e ".[${extras}]"
else
    "$PY" -m pip install -q -c "$constraints" -e .
fi
