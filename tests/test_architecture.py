"""The package's shape: imports point one way along the pipeline, no cycles, serving never imports training.

docs/architecture.md draws the same graph; a change that breaks it should fail here, not in review.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "loscat_hf"
CORE = {"errors", "defaults", "hardware", "taxonomy", "io", "__init__"}  # leaves every stage may use
# stage -> the stages it may import (besides itself and CORE): data -> model -> evaluation -> training, and
# serving (infer, apps) beside training, never importing it or evaluation
ALLOWED = {
    "data": set(),
    "model": {"data"},
    "viz": {"model"},
    "evaluation": {"data", "model", "viz"},
    "training": {"data", "model", "viz", "evaluation"},
    "infer": {"data", "model"},
    "link": {"data", "viz"},
    "hub": {"data", "model"},
    "apps": {"data", "model", "viz", "infer"},
    "demo": {"data", "model", "evaluation", "training"},
    "cli": {"data", "model", "viz", "evaluation", "training", "infer", "link", "hub", "apps", "demo"},
    "__main__": {"cli"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(("loscat_hf", *parts))] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """loscat_hf modules a file imports, at module level or inside functions (lazy imports count too)."""
    found = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return  # annotations only: never executed
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (line {node.lineno}); "
                                 "write `from loscat_hf.x import y` "
                                 "so this check sees it")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loscat_hf"):
            for alias in node.names:  # `from loscat_hf.data import packing` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("loscat_hf"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules}


def _stage(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted({_stage(m) for m in _graph()} - CORE - set(ALLOWED))
    assert not unknown, ("new top-level modules or packages: add them to ALLOWED and docs/architecture.md: "
                         f"{unknown}")


def test_imports_point_one_way():
    bad = []
    for module, deps in _graph().items():
        stage = _stage(module)
        if stage in CORE:
            allowed = CORE
        else:
            allowed = CORE | ALLOWED[stage] | {stage}
        bad += [f"{module} -> {d}" for d in sorted(deps) if _stage(d) not in allowed]
    assert not bad, "imports against the pipeline's direction:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [node, dep]) if dep in stack
                              else f"{node} -> {dep}")
            elif dep not in state:
                dfs(dep, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_lazy_imports():
    """The graph must include imports inside functions (most heavy imports here are lazy)."""
    graph = _graph()
    assert "loscat_hf.training.run" in graph["loscat_hf.cli.train"]  # imported inside train_command only


def _only_reexports(node: ast.stmt, first: bool) -> bool:
    """A docstring (the first statement), an import, or `__all__ = [...]`."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return True
    if isinstance(node, ast.Expr):
        return first and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
    return False


def test_package_inits_only_reexport():
    """A subpackage's __init__.py holds a docstring, imports and `__all__`: its code lives in a named module
    that says what it does (loscat_hf/__init__.py's lazy re-export table is the one exception)."""
    found = []
    for path in sorted(PACKAGE.rglob("__init__.py")):
        if path.parent == PACKAGE:
            continue
        body = ast.parse(path.read_text(encoding="utf-8")).body
        found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {type(node).__name__}"
                  for i, node in enumerate(body) if not _only_reexports(node, i == 0)]
    assert not found, "move this code into a module of its package:\n" + "\n".join(found)


@pytest.mark.parametrize("entry",
                         ["loscat_hf.apps.space", "loscat_hf.infer.folder", "loscat_hf.infer.explain"])
def test_serving_never_loads_training_code(entry):
    """Importing and building the serving path leaves loscat_hf.training and loscat_hf.evaluation unloaded."""
    code = (f"import sys, importlib; importlib.import_module({entry!r}); "
            "import loscat_hf.infer.predictor; "
            "bad = sorted(m for m in sys.modules "
            "if m.startswith(('loscat_hf.training', 'loscat_hf.evaluation'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                               **{k: v for k, v in __import__("os").environ.items()}})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_no_module_is_huge():
    """A newcomer reads a module in one sitting: ~400 lines at most, unless a reason is written here."""
    reasons = {}  # module -> why it may be longer
    long = [f"{m} ({n} lines)" for m, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420 and m not in reasons]
    assert not long, long


def test_lazy_public_api_names_resolve():
    """`loscat_hf.prepare/train/evaluate/...` are the API functions, also once every subpackage is loaded (a
    subpackage named like an API function would shadow it: hence `training/`, not `train/`)."""
    import importlib
    import pkgutil

    import loscat_hf

    for info in pkgutil.walk_packages(loscat_hf.__path__, "loscat_hf."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in loscat_hf.__all__:
        value = getattr(loscat_hf, name)
        assert not isinstance(value, type(loscat_hf)), f"loscat_hf.{name} is a module, not the API object"
    assert loscat_hf.train is importlib.import_module("loscat_hf.training.run").train


def test_only_the_model_folder_module_names_loscat_config_keys():
    """Every `loscat_*` config.json attribute is written and read through model/folder.py: one name per fact.
    A literal like "loscat_max_side", or `config.loscat_x`, anywhere else fails here."""
    import re

    owner = PACKAGE / "model" / "folder.py"
    not_keys = {"loscat_hf", "loscat_classification"}  # the package and the local `evaluate` metric
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == owner:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            if text and re.fullmatch(r"loscat_[a-z_]+", text) and text not in not_keys:
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {text!r}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("loscat_"):
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert not bad, "model-folder keys outside model/folder.py:\n" + "\n".join(bad)


def test_only_the_predictor_seam_imports_onnx_runtime():
    """ONNX Runtime, onnx and onnxscript are imported only under infer/backends/ (behind infer.load)."""
    seam = PACKAGE / "infer" / "backends"
    onnx = ("onnxruntime", "onnx", "onnxscript")
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in onnx for n in names) and seam not in path.parents:
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not bad, "ONNX imports outside infer/backends/: " + ", ".join(bad)


def test_ruff_is_clean_at_the_configured_line_length():
    """`ruff check .` with pyproject's rules (E501 at 110 columns included) passes: CI runs it through
    here."""
    import shutil

    ruff = shutil.which("ruff") or pytest.skip("ruff is not installed (the test extra installs it)")
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=PACKAGE.parent, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
