"""The README's Python API example runs as written (in a fresh folder, offline, on CPU)."""

import re
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
def test_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_block("python-api"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "macro-F1" in out and "need review" in out
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "predictions.csv").is_file()
    assert (tmp_path / "model" / "eval_validation" / "metrics.json").is_file()
