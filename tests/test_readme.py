"""The README's Python API example runs as written (in a fresh folder, offline, on CPU)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_block(section: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    part = text.split(f"<!-- section: {section} -->", 1)[1].split("<!-- section:", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", part, flags=re.S)
    assert len(blocks) == 1, f"README section {section} should hold exactly one python block"
    return blocks[0]


@pytest.mark.slow
def test_python_api_example_runs_as_written(tmp_path):
    """As a user runs it: the block saved as a script, `python example.py` in an empty folder."""
    (tmp_path / "example.py").write_text(_python_block("python-api"), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "macro-F1" in proc.stdout and "need review" in proc.stdout
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "predictions.csv").is_file()
    assert (tmp_path / "model" / "eval_validation" / "metrics.json").is_file()


def test_every_documented_import_resolves():
    """`from loscat_hf... import X` lines in the README, the docs and the model card keep working after code moves."""
    import importlib

    texts = [ROOT / "README.md", ROOT / "model_card.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = 0
    for path in texts:
        for module, names in re.findall(r"from (loscat_hf[\w.]*) import ([\w, ]+)", path.read_text(encoding="utf-8")):
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert getattr(mod, name, None) is not None, f"{path.name}: from {module} import {name}"
                found += 1
    assert found >= 3
