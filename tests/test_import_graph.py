"""The library's packages are layers that import only downward (``LAYERS``), its modules import one another without
cycles, function-level imports counted, no chapter module imports another (what two chapters share lives in the
library), and the modules that define the toy models never import the one that builds them
(``analysis_lib.toy.pipeline``)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import analysis_lib

PACKAGE = Path(analysis_lib.__file__).parent
MODEL_MODULES = (
    "training.ssl_encoder",
    "training.clip_llava",
    "training.lm_pretraining",
    "models.tiny",
    "models.comm_merge",
    "toy.toy_setup",
)
LAYERS = ("core", "stats", "data", "models", "scoring", "training", "full", "toy", "book", "chapters")
"""The library's packages, lowest first: a module imports from its own package or a lower one, never a higher."""


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules that an import statement imports (``from a import b``: ``a.b`` if it is a module)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = {f"{node.module}.{alias.name}" for alias in node.names}
        return (names & modules) or ({node.module} & modules)
    return set()


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (functions included)."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        name: set().union(*(imported(node, modules) for node in ast.walk(ast.parse(path.read_text())))) - {name}
        for name, path in paths.items()
    }


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for name in graph[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "analysis_lib.toy.pipeline" in graph and graph["analysis_lib.toy.toy_runs"]  # the walk found the package
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_the_models_modules_never_import_the_pipeline():
    graph = import_graph()
    for module in MODEL_MODULES:
        assert "analysis_lib.toy.pipeline" not in reachable(graph, f"analysis_lib.{module}"), module


def test_the_pipeline_imports_at_the_top_only():
    tree = ast.parse((PACKAGE / "toy" / "pipeline.py").read_text())
    everywhere = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert everywhere and len(everywhere) == sum(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body)


def test_a_chapter_imports_no_other_chapter_only_the_claims_page_reads_them():
    graph = import_graph()
    chapters = {name for name in graph if name.startswith("analysis_lib.chapters.ch")}
    assert len(chapters) == 8
    for chapter in chapters - {"analysis_lib.chapters.ch00_claims"}:
        assert not graph[chapter] & chapters, f"{chapter} imports {sorted(graph[chapter] & chapters)}"


def layer(module: str) -> int:
    """The rank in ``LAYERS`` of the package a module belongs to."""
    return LAYERS.index(module.split(".")[1])


def test_every_module_lives_in_a_layer_and_imports_only_downward():
    graph = import_graph()
    loose = [name for name in graph if name != "analysis_lib" and name.split(".")[1] not in LAYERS]
    assert not loose, f"modules outside the layers: {loose}"
    upward = [(name, dep) for name, deps in graph.items() if name != "analysis_lib" for dep in deps
              if dep != "analysis_lib" and layer(dep) > layer(name)]  # fmt: skip
    assert not upward, f"imports of a higher layer: {upward}"
