"""agent/ is a few packages whose imports run one way (issue #21): each package imports only its own or lower
layers (and mpm_inr), no two agent modules import each other through any chain, and mpm_inr never imports agent.

Every `import` / `from ... import` is read with `ast`, at module level and inside functions, relative ones resolved,
so a cycle hidden by a function-local import fails here too. The few function-local agent imports that remain
are listed in LAZY with the reason they are lazy; a new one must be added there (or, better, made module level).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "agent"

#: lowest first; a module of layer i may import agent modules of layers <= i
LAYERS = ("runs", "study", "codemod", "policies", "reporting", "loop", "__main__")
#: function-local agent imports that remain (importer, imported) and why they are not at module level
LAZY = {
    ("agent.__main__", "agent.loop.explorer"): "the CLI imports only the subcommand it runs",
    ("agent.__main__", "agent.loop.landscape"): "the CLI imports only the subcommand it runs",
    ("agent.__main__", "agent.loop.plan_estimate"): "the CLI imports only the subcommand it runs",
    ("agent.__main__", "agent.reporting.render"): "the CLI imports only the subcommand it runs",
    ("agent.__main__", "agent.reporting.report"): "optional plotting deps: a missing one is a one-line error",
    ("agent.__main__", "agent.runs.runner"): "the CLI imports only the subcommand it runs",
    ("agent.loop.blocks", "agent.reporting.wandb_study"): "wandb/matplotlib trouble is only a warning",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


AGENT_MODULES = modules(AGENT)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import in the file; `from pkg import name` counts as
    pkg.name when that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local.update(id(n) for n in ast.walk(fn) if n is not fn)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in local) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub if sub in AGENT_MODULES else base, id(node) in local))
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__main__"


def agent_edges() -> list[tuple[str, str, bool]]:
    return [(m, target, lazy) for m, p in AGENT_MODULES.items() for target, lazy in imports(p)
            if target == "agent" or target.startswith("agent.")]


def test_every_agent_module_is_in_a_layer():
    unplaced = sorted(m for m in AGENT_MODULES if m != "agent" and layer(m) not in LAYERS)
    assert not unplaced, f"modules outside the layered packages {LAYERS}: {unplaced}"


def test_imports_run_down_the_layers():
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, t, _ in agent_edges()
              if t != "agent" and LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert not upward, "upward imports (order, lowest first: " + " -> ".join(LAYERS) + "):\n" + "\n".join(upward)


def test_agent_imports_no_other_first_party_code():
    first_party = {"train", "generate", "hydra_plugins", "tests", "conftest"}
    bad = [f"{m} imports {t}" for m, p in AGENT_MODULES.items() for t, _ in imports(p)
           if t.split(".")[0] in first_party]
    assert not bad, "agent may import only agent and mpm_inr of this repository:\n" + "\n".join(bad)


def test_no_import_cycles_between_agent_modules():
    graph: dict[str, set[str]] = {m: set() for m in AGENT_MODULES}
    for m, t, _ in agent_edges():
        if t in graph and t != m:
            graph[m].add(t)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_function_local_agent_imports_are_only_the_listed_lazy_ones():
    found = {(m, t) for m, t, lazy in agent_edges() if lazy}
    assert found == set(LAZY), (f"new function-local agent imports {sorted(found - set(LAZY))} (make them module "
                                f"level; a cycle they would hide is a layering bug); gone: {sorted(set(LAZY) - found)}")


@pytest.mark.parametrize("root", ["mpm_inr", "hydra_plugins"])
def test_lower_code_never_imports_agent(root):
    bad = [f"{module_name(p)} imports {t}" for p in sorted((REPO / root).rglob("*.py")) for t, _ in imports(p)
           if t == "agent" or t.startswith("agent.")]
    assert not bad, f"{root} must not import agent:\n" + "\n".join(bad)


def test_the_layers_are_documented():
    """docs/contracts.md states the same order this test enforces."""
    text = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    assert " -> ".join(f"agent.{p}" for p in LAYERS) in text
