"""The house rules that keep the code base readable: no import cycles, arrows point down.

The imports are read from the source (every ``import`` statement, including those inside
functions, which run when the function does; ``if TYPE_CHECKING:`` blocks are skipped), so a
cycle that only forms at run time is found too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import ember

PACKAGE = Path(ember.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module -> the Ember modules it imports (``from ember.x import y`` names ``ember.x.y`` if it is a module)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names if alias.name.startswith("ember")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                if not base.startswith("ember"):
                    continue
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else resolve(base)
                    for alias in node.names
                ]
            else:
                continue
            graph[module].update(t for t in targets if t and t != module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # `lifecycle` imports the loop at module level; `LightningModule.load_from_checkpoint` imports saving
    # inside the method: both kinds must be edges, or the cycle check below proves nothing
    assert "ember.trainer.loop" in graph["ember.trainer.lifecycle"]
    assert "ember.core.saving" in graph["ember.core.module"]


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert cycles == [], "import cycles (break them by moving the shared piece down a layer): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_does_not_import_the_trainer():
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t.startswith("ember.trainer"))
        for module, targets in graph.items()
        if module.startswith("ember.core")
    }
    assert {m: t for m, t in offenders.items() if t} == {}, (
        "core/ reaches the trainer only through `module.trainer`, never by import"
    )


def test_callbacks_and_loggers_do_not_import_the_loop():
    graph = import_graph()
    loop_modules = {"ember.trainer.loop", "ember.trainer.step", "ember.trainer.lifecycle"}
    offenders = {
        module: sorted(targets & loop_modules)
        for module, targets in graph.items()
        if module.startswith(("ember.callbacks", "ember.loggers"))
    }
    assert {m: t for m, t in offenders.items() if t} == {}
