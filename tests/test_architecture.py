"""The package's layout rules (docs/architecture.md), read from the source with `ast`: no import cycle inside soft_hf,
dependencies pointing one way (the model files import nothing else of soft_hf; tasks are imported by no other part),
the model files flat and relative among themselves, no script editing `sys.path`, training modules a reader can hold
in their head, and the console entry points resolving to functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT


PACKAGE_DIR = REPO_ROOT / "soft_hf"
MODEL_DIR = PACKAGE_DIR / "models" / "soft"
# What each part may import inside soft_hf (besides itself); "soft_hf" is the package root, the public API.
ALLOWED = {
    "soft_hf.models": set(),
    "soft_hf.data": {"soft_hf.models"},
    "soft_hf.hub": {"soft_hf.models"},
    "soft_hf.conversion": {"soft_hf.models", "soft_hf.hub"},
    "soft_hf.tasks": {"soft_hf", "soft_hf.models", "soft_hf.data", "soft_hf.hub", "soft_hf.conversion"},
    "soft_hf.deployment": {"soft_hf.models", "soft_hf.hub"},
    "soft_hf.benchmarks": {
        "soft_hf.models",
        "soft_hf.data",
        "soft_hf.hub",
        "soft_hf.conversion",
        "soft_hf.deployment",
        "soft_hf.tasks",
    },
}
ROOT_ALLOWED = {"soft_hf.models", "soft_hf.hub", "soft_hf.conversion"}
ENTRY_POINTS = {
    "soft-train",
    "soft-evaluate",
    "soft-predict",
    "soft-convert",
    "soft-push",
    "soft-benchmark",
    "soft-export-onnx",
    "soft-make-scenes",
    "soft-train-detection",
    "soft-train-segmentation",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """soft_hf modules that `name` imports anywhere in its file (top level or inside functions), as module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from package import module` imports the module; `from module import name` the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import soft_hf.x.y` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted: the import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def part_of(name: str) -> str:
    """The part a module belongs to: soft_hf.models, soft_hf.data, ... or "soft_hf" for the root."""
    return ".".join(name.split(".")[:2])


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_soft_hf():
    graph = import_graph()
    assert "soft_hf.tasks.classification.trainer" in graph and graph["soft_hf.tasks.classification.trainer"]
    assert cycles(graph) == []


def test_each_part_imports_only_what_it_may():
    problems = []
    for name, targets in import_graph().items():
        part = part_of(name)
        allowed = ROOT_ALLOWED if part == "soft_hf" else ALLOWED[part]
        for target in targets:
            target_part = part_of(target)
            if target_part != part and target_part not in allowed:
                problems.append(f"{name} imports {target}")
    assert problems == []


def test_tasks_do_not_import_each_other():
    problems = []
    for name, targets in import_graph().items():
        if name.startswith("soft_hf.tasks.") and name.count(".") >= 3:
            task = ".".join(name.split(".")[:3])
            for target in targets:
                if target.startswith("soft_hf.tasks.") and target.count(".") >= 3 and not target.startswith(task + "."):
                    problems.append(f"{name} imports {target}")
    assert problems == []


def test_model_files_are_flat_relative_and_import_nothing_else_of_soft_hf():
    """What travels with a checkpoint: `save_pretrained` copies a model file and the files it imports as
    `from .name import X`; anything else of soft_hf would be missing where the checkpoint is loaded."""
    model_files = sorted(path for path in MODEL_DIR.glob("*.py") if path.name != "__init__.py")
    assert [path.name for path in model_files] == [
        "configuration_soft.py",
        "configuration_soft_dense.py",
        "image_processing_soft.py",
        "modeling_soft.py",
        "modeling_soft_dense.py",
        "soft_attention.py",
    ]
    assert not [path for path in MODEL_DIR.iterdir() if path.is_dir() and path.name != "__pycache__"]
    for path in model_files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module and (MODEL_DIR / f"{node.module}.py").is_file(), (
                    f"{path.name}: `from {'.' * node.level}{node.module or ''} import` is not a flat sibling import"
                )
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("soft_hf"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("soft_hf") for alias in node.names), path.name


def test_no_script_edits_sys_path():
    offenders = []
    for folder in ("scripts", "soft_hf"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                    offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []
    # The reason scripts once did: a script named like an imported library shadows it.
    assert not (REPO_ROOT / "scripts" / "evaluate.py").exists()


def test_training_modules_fit_in_a_readers_head():
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in (PACKAGE_DIR / "tasks" / "classification").glob("*.py")
    }
    assert max(sizes.values()) <= 400, sizes


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_console_entry_points_name_main_functions_of_the_package(command):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert set(scripts) == ENTRY_POINTS
    module_path, _, function = scripts[command].partition(":")
    assert module_path.startswith("soft_hf.") and function == "main"
    # Read, not imported: importing the benchmark sets THP_MEM_ALLOC_ENABLE for the processes this one starts.
    tree = ast.parse((REPO_ROOT / (module_path.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    assert any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body)
