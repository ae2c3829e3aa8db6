"""The plain-Python API as a library user meets it: the names `loscat_hf` exports (and lists for tab
completion without importing them), annotations that resolve, the names the docs promise, and errors that
speak of the function's parameters (the CLI names the flags instead)."""

import ast
import inspect
import pickle
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import loscat_hf
from loscat_hf.errors import LoscatError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "loscat_hf"
PUBLIC = [name for name in loscat_hf.__all__ if name != "__version__"]


def test_import_dir_and_help_load_neither_torch_nor_the_api_modules():
    """`import loscat_hf` and `dir(loscat_hf)` (tab completion) import no API module; `loscat-hf --help` and
    `loscat-hf train --help` import neither torch nor transformers."""
    code = """
import contextlib, io, sys
import loscat_hf
names = dir(loscat_hf)
print(sorted(set(loscat_hf._LAZY) - set(names)), sorted(m for m in sys.modules if m.startswith("loscat_hf.")))
from loscat_hf.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
    assert main(["train", "--help"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[] []", "[]"], proc.stdout


def test_dir_lists_the_lazy_names():
    listed = dir(loscat_hf)
    assert set(loscat_hf.__all__) <= set(listed)
    assert "__getattr__" in listed and "_LAZY" in listed  # the module's own globals stay listed


def test_type_checkers_see_the_same_names():
    """The TYPE_CHECKING imports of loscat_hf/__init__.py (what IDEs and type checkers read) are _LAZY's names
    from _LAZY's modules, each re-exported explicitly (`from m import X as X`)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") ==
                 "TYPE_CHECKING")
    imported = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.dump(node)
        for alias in node.names:
            assert alias.asname == alias.name, (f"{alias.name}: write `{alias.name} as {alias.name}` "
                                                "(re-export)")
            imported[alias.name] = node.module
    assert imported == loscat_hf._LAZY


def _annotated(obj) -> list:
    """The object, and for a class its __init__ and public methods (classmethods, staticmethods,
    properties)."""
    if not inspect.isclass(obj):
        return [obj]
    found = [obj, obj.__init__]
    for name, value in vars(obj).items():
        if name.startswith("_"):
            continue
        value = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        value = value.fget if isinstance(value, property) else value
        if inspect.isfunction(value):
            found.append(value)
    return found


@pytest.mark.parametrize("name", PUBLIC)
def test_type_hints_resolve(name):
    """typing.get_type_hints works on every public function and class (a name imported only under
    TYPE_CHECKING, or inside a function, would make it raise NameError)."""
    for obj in _annotated(getattr(loscat_hf, name)):
        typing.get_type_hints(obj)


def test_the_package_is_typed():
    """PEP 561: the marker is in the package and in the wheel's package data (scripts/check_wheel.sh checks
    the installed wheel)."""
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^\[tool\.setuptools\.package-data\]\nloscat_hf = \[[^]]*"py\.typed"', pyproject, re.M)
    assert "py.typed" in (ROOT / "scripts" / "check_wheel.sh").read_text(encoding="utf-8")


def test_every_name_the_docs_promise_is_exported():
    """`loscat_hf.X`, `from loscat_hf import X` and the result types (`...Result`, `...Summary`, ...) that
    README.md and docs/ name are importable from loscat_hf."""
    text = "\n".join(p.read_text(encoding="utf-8")
                     for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    # (not `python -m loscat_hf.cli`: a module run as a command)
    names = set(re.findall(r"(?<!-m )\bloscat_hf\.(?!__)(\w+)\b(?![.\w])", text))
    for group in re.findall(r"from loscat_hf import ([\w, ]+)", text):
        names.update(n.strip() for n in group.split(","))
    names.update(re.findall(r"`([A-Z]\w*(?:Result|Summary|Evaluation|Prediction|Predictor))\b", text))
    # the scan works
    assert {"ExplainResult", "QuickstartResult", "PredictionsEvaluation", "prepare"} <= names
    assert names - set(loscat_hf.__all__) == set()


# ------------------------------------------------------------------------- errors: parameters, then flags

def test_cli_message_puts_the_flags_where_the_parameters_were():
    flags = {"images": "--images", "overwrite": "--overwrite", "n_patients": "--patients"}
    leading = LoscatError("images 'nope' does not exist", param="images")
    assert str(leading) == "images 'nope' does not exist" and leading.params == ("images",)
    assert leading.cli_message(flags) == "--images 'nope' does not exist"
    hint = LoscatError("folder d is not empty; pass overwrite=True to replace it", param="overwrite")
    assert hint.cli_message(flags) == "folder d is not empty; pass overwrite=True to replace it (--overwrite)"
    both = LoscatError("n_patients: too few for overwrite", param=("n_patients", "overwrite"))
    assert both.cli_message(flags) == "--patients: too few for overwrite (--overwrite)"
    python_only = LoscatError("train_options must be a dict", param="train_options")
    assert python_only.cli_message(flags) == str(python_only)  # no flag: the message as it is
    assert LoscatError("imagesX is not a parameter", param="images").cli_message(flags) == \
        "imagesX is not a parameter (--images)"
    assert LoscatError("plain").cli_message(flags) == "plain" and LoscatError("plain").params == ()
    again = pickle.loads(pickle.dumps(leading))  # raised in a worker process, re-raised in the main one
    assert str(again) == str(leading) and again.params == ("images",)


def test_option_flags_map_dests_to_the_flag_a_user_types():
    import argparse

    from loscat_hf.cli.flags import option_flags

    p = argparse.ArgumentParser()
    p.add_argument("out")  # a positional has no flag: its parameter's name stays in the message
    p.add_argument("--patients", dest="n_patients", type=int)
    p.add_argument("--output_dir", "--output-dir", dest="output_dir")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--augment", dest="augment", action="store_true")
    # the default: a message never asks for it
    p.add_argument("--private", dest="private", action="store_true")
    p.add_argument("--public", dest="private", action="store_false")
    p.set_defaults(augment=False, private=True)
    assert option_flags(p) == {"help": "--help", "n_patients": "--patients", "output_dir": "--output-dir",
                               "augment": "--augment", "private": "--public"}


def test_an_api_error_names_the_parameter_and_the_cli_names_the_flag(tmp_path, capsys):
    from loscat_hf.cli import main

    nope = tmp_path / "nope"
    with pytest.raises(LoscatError) as caught:
        loscat_hf.predict_folder("unused-model", nope, tmp_path / "p.csv", progress=False)
    assert str(caught.value) == f"images '{nope}' does not exist" and caught.value.params == ("images",)
    assert main(["predict", "--model", "unused-model", "--images", str(nope),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err == f"loscat-hf: error: --images '{nope}' does not exist\n"

    # a parameter whose flag reads otherwise (n_patients: --patients): the subcommand's dest is the parameter
    with pytest.raises(LoscatError, match=r"^n_patients must be a whole number >= 1, got 0$"):
        loscat_hf.generate_demo_data(tmp_path / "d", n_patients=0)
    assert main(["demo-data", str(tmp_path / "d"), "--patients", "0"]) == 2
    assert capsys.readouterr().err == "loscat-hf: error: --patients must be a whole number >= 1, got 0\n"

    # a fix that names a parameter: `overwrite=True` in Python, the flag appended on the command line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(LoscatError, match="pass overwrite=True or another folder$") as caught:
        loscat_hf.generate_demo_data(tmp_path / "full", n_patients=2, n_photos=12)
    assert "--" not in str(caught.value)
    assert main(["demo-data", str(tmp_path / "full"), "--patients", "2", "--photos", "12"]) == 2
    assert capsys.readouterr().err.endswith("pass overwrite=True or another folder (--overwrite)\n")


def test_train_errors_name_the_field_and_its_flag(tmp_path, capsys):
    """`train` takes every LoscatArguments / TrainingArguments field; the CLI names the dashed spelling."""
    from loscat_hf.cli import main

    with pytest.raises(LoscatError, match=r"^dataset is required") as caught:
        loscat_hf.train_arguments(output_dir=str(tmp_path / "m"))
    assert caught.value.params == ("dataset",)
    assert main(["train", "--output-dir", str(tmp_path / "m"), "--sampling-power", "2",
                 "--dataset", "d"]) == 2
    assert capsys.readouterr().err.startswith("loscat-hf: error: --sampling-power must be between 0")


# A message may name a command to run, in backticks (`loscat-hf prepare --overwrite`): an instruction, not a
# parameter. Modules whose owners have not moved to param= yet are listed here; remove an entry once done.
SPEAKS_FLAGS = {"loscat_hf/cli/": "the command line itself"}


def _message_template(node: ast.expr) -> str:
    """A message's text with `{}` for each formatted value (implicitly joined literals are one node)."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return ""


def test_api_errors_do_not_speak_of_flags():
    """No LoscatError raised by the Python API names a command-line flag outside a quoted command: the message
    names the parameter, `param=` lets the CLI name the flag (docs/development.md)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(tuple(SPEAKS_FLAGS)):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "LoscatError"
                    and node.args):
                continue
            text = re.sub(r"`[^`]*`", "", _message_template(node.args[0]))
            if re.search(r"(?<![\w-])--[a-z]", text):
                found.append(f"{rel}:{node.lineno}: {text}")
    assert not found, "\n".join(found)
