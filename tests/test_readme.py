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
    """`from loscat_hf... import X` lines in the README, the docs and the model card keep working after
    code moves."""
    import importlib

    texts = [ROOT / "README.md", ROOT / "model_card.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = 0
    for path in texts:
        for module, names in re.findall(r"from (loscat_hf[\w.]*) import ([\w, ]+)",
                                        path.read_text(encoding="utf-8")):
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert getattr(mod, name, None) is not None, f"{path.name}: from {module} import {name}"
                found += 1
    assert found >= 3


# --------------------------------------------------------------------- the README is a guide, not a notebook

README_LINES_MAX = 200
DATE = re.compile(r"20\d\d-\d\d-\d\d")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of `## heading` up to the next `## ` heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    bodies = {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    assert heading in bodies, f"README has no '## {heading}' section (has: {sorted(bodies)})"
    return bodies[heading]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (no backticks, link text only), lower case, every
    character but letters, digits, spaces, '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (outside code blocks), with GitHub's -1, -2 for repeats."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*#*$", text, flags=re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _broken(target: str, source: Path) -> str | None:
    """Why a relative link `file#anchor` from `source` does not resolve, or None."""
    file, _, anchor = target.partition("#")
    path = (source.parent / file).resolve() if file else source
    if not path.is_file():
        return f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    if anchor and path.suffix == ".md" and anchor not in _anchors(path):
        return f"{target}: {path.name} has no heading with anchor #{anchor}"
    return None


def test_slug_matches_githubs_anchors():
    """The anchor rule the link checks rely on, on headings of the kinds docs/ has."""
    assert _slug("`loscat-hf push`: model + card") == "loscat-hf-push-model--card"
    assert (_slug("Dataset push (`push-dataset`, `prepare --push-to-hub`)")
            == "dataset-push-push-dataset-prepare---push-to-hub")
    assert _slug("Body map (`loscat_hf.viz.bodymap`)") == "body-map-loscat_hfvizbodymap"
    assert _slug("The quickstart's numbers") == "the-quickstarts-numbers"


def test_readme_is_at_most_200_lines():
    """A guide: what it is, install, quickstart, the command table, the Python API, patient data. Details and
    measurements live in docs/."""
    lines = _readme().splitlines()
    assert len(lines) <= README_LINES_MAX, (f"README.md has {len(lines)} lines (at most {README_LINES_MAX}): "
                                            "move detail to docs/")


def test_readme_holds_no_dated_figure():
    """Dated measurements (benchmarks, timings, test counts) live in docs/benchmarks.md and
    docs/development.md, each next to its command and date; a date in the README is a measurement that
    should have moved."""
    dated = [f"{n}: {line}" for n, line in enumerate(_readme().splitlines(), 1) if DATE.search(line)]
    assert not dated, "README.md lines with a date (move the measurement to docs/):\n" + "\n".join(dated)


def test_every_subcommand_has_a_row_in_the_command_table():
    """Each `loscat-hf` subcommand (from the real parser) has one row in the README's command table, linking
    to the docs/ page (and heading) that holds its detail; the table lists no command the CLI lacks."""
    import argparse

    from loscat_hf.cli import build_parser

    subparsers = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    commands = set(subparsers[0].choices)
    assert {"prepare", "train", "predict", "label"} <= commands  # the parser was read

    rows = re.findall(r"^\| `([\w-]+)` \|(.*)\|\s*$", _section(_readme(), "Commands"), flags=re.M)
    listed = [name for name, _ in rows]
    assert sorted(listed) == sorted(set(listed)), f"a command has two rows: {listed}"
    assert set(listed) == commands, ("missing from the README's command table: "
                                     f"{sorted(commands - set(listed))}; "
                                     f"not a subcommand: {sorted(set(listed) - commands)}")
    problems = []
    for name, cells in rows:
        docs = [t for t in LINK.findall(cells) if t.startswith("docs/")]
        if not docs:
            problems.append(f"{name}: no link to a docs/ page")
        problems += [f"{name}: {why}" for t in docs if (why := _broken(t, ROOT / "README.md"))]
    assert not problems, "\n".join(problems)


def test_readme_links_resolve():
    """Every relative link in the README (docs pages, anchors, images) points at something that exists."""
    targets = [t for t in LINK.findall(_readme()) if not re.match(r"[a-z]+:", t)]
    assert len(targets) >= 20  # the scan works: the command table alone has 16
    problems = [why for t in targets if (why := _broken(t, ROOT / "README.md"))]
    assert not problems, "\n".join(problems)


def test_links_into_the_readme_resolve():
    """Links from docs/, the Space's and the model card's Markdown and the package into README.md#anchor
    point at a heading the README still has."""
    sources = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "space" / "README.md", ROOT / "model_card.md",
               *sorted((ROOT / "loscat_hf").rglob("*.md")), *sorted((ROOT / "loscat_hf").rglob("*.py"))]
    anchors = _anchors(ROOT / "README.md")
    assert {"install", "quickstart", "commands", "python-api", "patient-data"} <= anchors
    problems = []
    for source in sources:
        for anchor in re.findall(r"README\.md#([\w-]+)", source.read_text(encoding="utf-8")):
            if anchor not in anchors:
                problems.append(f"{source.relative_to(ROOT)}: README.md#{anchor}")
    assert not problems, "links to README anchors that no longer exist:\n" + "\n".join(problems)


def test_install_section_holds_the_setup_and_ci_test_commands():
    """The two set-up commands users copy, and the full test command CI runs (`.ci/run`), as written."""
    install = _section(_readme(), "Install")
    assert "bash scripts/setup.sh && loscat-hf quickstart" in install
    assert "bash scripts/setup.sh test && python -m pytest -q " in install
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'bash scripts/setup.sh test && python -m pytest -q -m ""' in ci
    assert 'python -m pytest -q -m ""' in install
