"""The project's import graph, read from the source (every import, at module level or inside a function): no
module imports itself around a circle."""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

# The project's own packages and scripts; the tests are not imported by them.
SOURCES = ("components", "policy", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports: each named module, and a name imported from a package when it is a
    module of its own (`from components.planning import memory`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


PROBE_IMPORTS = "import os\n\n\ndef f():\n    from pkg import b\n    from .c import d\n"
PROBE_BREACHES = (
    "from components.planning.deployment import Service, build_deployment\n"
    "from components.planning.rules import server_stall_seconds\n"
    "import components.planning.health\n"
    "from components.planning.deployment import BACKEND_KEY_LENGTH\n"
)


def facts() -> dict[str, Any]:
    """What the tests below check, read from the source: the graph, the components' seam, and the checks' own
    answers on two probe files."""
    with tempfile.TemporaryDirectory() as tmp:
        imports, breaches = Path(tmp, "a.py"), Path(tmp, "vllm.py")
        imports.write_text(PROBE_IMPORTS)
        breaches.write_text(PROBE_BREACHES)
        seam, uses = components_seam()
        return {
            "graph": {k: sorted(v) for k, v in import_graph().items()},
            "seam": seam,
            "uses": sorted(uses),
            "probe_imports": sorted(imported("pkg.a", imports, {"pkg.a", "pkg.b", "pkg.c", "pkg.c.d"})),
            "probe_breaches": seam_breaches(breaches),
        }


@functools.cache
def fresh_facts() -> dict[str, Any]:
    """facts(), in a fresh interpreter, once: CPython 3.11.7's ast.parse can fail with "AST constructor recursion
    depth mismatch" in a process whose earlier tests left its recursion bookkeeping off (fixed in 3.11.8)."""
    code = "import json, tests.test_imports as t; print(json.dumps(t.facts()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_no_import_cycle() -> None:
    graph = {k: set(v) for k, v in fresh_facts()["graph"].items()}
    assert "components.program" in graph and "components.planning.memory" in graph["components.planning.rules"]
    circles = cycles(graph)
    assert not circles, "modules that import each other, around a circle:\n" + "\n".join(
        " -> ".join(c) + "\n  " + "\n  ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c) for c in circles
    )


def test_the_cycle_check_sees_a_circle() -> None:
    """The check above would fail on a circle, one through a function's own import too (PROBE_IMPORTS)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}) == [["a", "b", "c"]]
    assert cycles({"x": {"y"}, "y": {"x"}}) == [["x", "y"]]
    assert fresh_facts()["probe_imports"] == ["pkg.b", "pkg.c", "pkg.c.d"]


# The components' one way into planning: the deployment plan's types, and the function that builds it.
PLAN_MODULE = "components.planning.deployment"
BUILDER = "build_deployment"


def planning_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each import from components.planning in a file; (module, "") for a plain import."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components.planning"):
            found += [(node.module or "", a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("components.planning")]
    return found


def _is_type(value: object) -> bool:
    """A class, or a type alias of the plan's (SecretText = tuple[...])."""
    return isinstance(value, type) or typing.get_origin(value) is not None


def seam_breaches(path: Path) -> list[str]:
    import components.planning.deployment as plan

    out = []
    for module, name in planning_imports(path):
        if module != PLAN_MODULE or not name:
            out.append(f"{module}{'.' + name if name else ''}")
        elif name != BUILDER and not _is_type(getattr(plan, name, None)):
            out.append(f"{module}.{name} (neither a type of the plan nor {BUILDER})")
    return out


def components_seam() -> tuple[dict[str, list[str]], set[str]]:
    """Each components/*.py file's breaches of the seam, and every name they take from planning."""
    files = sorted((ROOT / "components").glob("*.py"))
    breaches = {f.name: seam_breaches(f) for f in files}
    return breaches, {name for f in files for _, name in planning_imports(f)}


def test_components_take_only_the_plan_from_planning() -> None:
    breaches, uses = fresh_facts()["seam"], fresh_facts()["uses"]
    assert {"program.py", "container.py", "host.py", "monitoring.py"} <= set(breaches)
    assert not {k: v for k, v in breaches.items() if v}, f"components import from planning beyond the plan: {breaches}"
    assert BUILDER in uses and "Container" in uses


def test_the_seam_check_sees_a_breach() -> None:
    """The check above would fail on a component that asks planning for more than the plan (PROBE_BREACHES)."""
    assert fresh_facts()["probe_breaches"] == [
        "components.planning.rules.server_stall_seconds",
        "components.planning.health",
        "components.planning.deployment.BACKEND_KEY_LENGTH (neither a type of the plan nor build_deployment)",
    ]
