#!/usr/bin/env bash
# Build a wheel, install it in a fresh venv (reusing the current torch), and check that the
# packaged data files (taxonomy, metric module, model-card template, the py.typed marker) are found from the
# installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" .
python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-deps "$tmp"/dist/loscat_hf-*.whl
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import loscat_hf, pathlib
from loscat_hf.taxonomy import load_taxonomy
t = load_taxonomy()
assert "site-packages" in loscat_hf.__file__, loscat_hf.__file__
assert len(t.sites) == 18 and len(t.classes) == 12, (len(t.sites), len(t.classes))
from loscat_hf.model.card import card_template
assert "{{ card_data }}" in card_template() and "image-classification" in card_template()
typed = pathlib.Path(loscat_hf.__file__).with_name("py.typed")
assert typed.is_file(), f"{typed} is missing: type checkers would treat the installed package as untyped (PEP 561)"
print(f"wheel OK: {loscat_hf.__file__} carries the taxonomy ({len(t.sites)} sites -> {len(t.classes)} classes), "
      "the model-card template and py.typed")
PY
rm -rf "$tmp"
